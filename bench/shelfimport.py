"""The shelf measurement of issue 11: N near-identical Clonezilla images (one office's
machines: the same GPT disk, each copy changed by a few files) imported one after another
into one repository; how much each import stores, against the folders' own size.

    sudo python3 -m bench.shelfimport [N] [--keep DIR]

The images are made by Debian's real `ocs-sr` (tests/kit/czshelf.py, zstd, no split) from
loop disks; the imports run the real command line. Prints one line per image and a summary;
nothing is asserted (the test is tests/root/test_shelf_import.py).
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the builders are the tests' kit (tests/kit), imported from there, untyped
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
build_shelf = importlib.import_module("kit.czshelf").build_shelf
Loops = importlib.import_module("kit.loops").Loops


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def import_one(repo: Path, shelf: Path, image: str) -> dict[str, object]:
    argv = [sys.executable, "-m", "appliance.cli", "import", "--repo", str(repo)]
    argv += ["--from", str(shelf), "--image", image, "--create", "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    for line in reversed(proc.stdout.splitlines()):
        data = json.loads(line)
        if data.get("type") == "result":
            [done] = data["images"]
            return dict(done)
    raise RuntimeError(proc.stdout + proc.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=6)
    parser.add_argument("--keep", type=Path, help="build in DIR and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="shelfimport-"))
    root.mkdir(parents=True, exist_ok=True)
    loops = Loops(root)
    try:
        started = time.monotonic()
        shelf = build_shelf(loops, root, args.count)
        print(f"built {args.count} Clonezilla images in {time.monotonic() - started:.0f} s")
        repo = root / "repo"
        total_new = 0
        total_folders = 0
        print(f"{'image':6} {'folder':>12} {'used':>12} {'new bytes':>12} {'new':>4} {'reused':>6}")
        for name in shelf.disks:
            done = import_one(repo, shelf.folder, name)
            size = folder_bytes(shelf.folder / name)
            total_new += int(str(done["new_bytes"]))
            total_folders += size
            print(
                f"{name:6} {size:12d} {done['used_bytes']!s:>12} {done['new_bytes']!s:>12} "
                f"{done['new_chunks']!s:>4} {done['reused_chunks']!s:>6}"
            )
        chunks = sum(p.stat().st_size for p in (repo / "chunks").rglob("*") if p.is_file())
        first = folder_bytes(shelf.folder / "pc1")
        print(
            f"{args.count} Clonezilla folders: {total_folders} bytes "
            f"({total_folders / first:.2f} x one folder of {first} bytes)"
        )
        print(
            f"repository after {args.count} imports: chunks {chunks} bytes, stored by the "
            f"imports {total_new} bytes ({chunks / first:.2f} x one Clonezilla folder)"
        )
    finally:
        loops.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

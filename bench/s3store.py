"""A repository in a bucket against the same repository in a folder: save and restore of one
disk, through the real command line, to a folder and to moto's S3 server on loopback.

    sudo python3 -m bench.s3store [--data MIB] [--rounds N] [--keep DIR]

The disk: GPT, one ext4 partition holding MIB MiB of files (half random, half text). Each
round saves the disk into a new folder repository and into a new prefix of the bucket, then
restores each onto a blank disk; the runs alternate. moto is a Python server that keeps the
objects in its own memory, one request at a time per thread: it is far slower than MinIO or
AWS S3, so the bucket's figures here are a floor (they say the store works and what a slow
server costs), not the speed of a real object store. Nothing is asserted (the tests are
tests/root/test_s3_repository.py and tests/unit/repo/test_s3store.py).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# the loop devices and the S3 server are the tests' kit (tests/kit), imported from there
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
Loops: Any = importlib.import_module("kit.loops").Loops
moto_server: Any = importlib.import_module("kit.s3server").moto_server

MiB = 1 << 20


def run(*argv: str, env: dict[str, str] | None = None) -> float:
    """Run a command; its wall time in seconds."""
    started = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return time.monotonic() - started


def build_disk(loops: Any, folder: Path, data_mib: int) -> str:
    path = folder / "source.img"
    with open(path, "wb") as handle:
        handle.truncate(data_mib * MiB * 2 + 64 * MiB)
    node: str = loops.attach(path)
    subprocess.run(
        ["sfdisk", "-q", node], input=b"label: gpt\n,,L\n", check=True, capture_output=True
    )
    subprocess.run(["partx", "-u", node], check=True)
    part = f"{node}p1"
    subprocess.run(["mkfs.ext4", "-q", "-F", part], check=True)
    mountpoint = folder / "fill"
    mountpoint.mkdir()
    subprocess.run(["mount", part, str(mountpoint)], check=True)
    try:
        half = data_mib * MiB // 2
        (mountpoint / "random.bin").write_bytes(os.urandom(half))
        line = b"disk image chunk sector restore save grub efi\n"
        (mountpoint / "text.txt").write_bytes(line * (half // len(line)))
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)
    return node


def blank(loops: Any, folder: Path, size: int, name: str) -> str:
    path = folder / name
    with open(path, "wb") as handle:
        handle.truncate(size)
    target: str = loops.attach(path)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=int, default=256, help="MiB of files on the disk")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="build in DIR and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-s3-"))
    root.mkdir(parents=True, exist_ok=True)
    loops = Loops(root)
    cli = [sys.executable, "-m", "appliance.cli"]
    times: dict[str, list[float]] = {}
    try:
        source = build_disk(loops, root, args.data)
        size = int(subprocess.run(["blockdev", "--getsize64", source], capture_output=True,
                                  check=True, text=True).stdout)  # fmt: skip
        with moto_server(root) as server:
            env = {**os.environ, **server.env()}
            server.client().create_bucket(Bucket="bench")
            for number in range(args.rounds):
                places = {"folder": str(root / f"repo-{number}"), "s3": f"s3://bench/r{number}"}
                for kind, repo in places.items():
                    save = [*cli, "save", source, "--repo", repo, "--image", "one", "--create"]
                    times.setdefault(f"save {kind}", []).append(run(*save, env=env))
                for kind, repo in places.items():
                    target = blank(loops, root, size, f"target-{kind}-{number}.img")
                    restore = [*cli, "restore", "--repo", repo, "--image", "one", target, "--yes"]
                    times.setdefault(f"restore {kind}", []).append(run(*restore, env=env))
                    loops.detach(target)
        print(f"disk {size // MiB} MiB, {args.data} MiB of files; {args.rounds} rounds; median")
        print(f"{'job':16} {'seconds':>8} {'MiB/s of files':>15}")
        for job, runs in times.items():
            median = statistics.median(runs)
            print(f"{job:16} {median:8.2f} {args.data / median:15.1f}")
    finally:
        loops.cleanup()
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Getting files back against restoring the whole partition: `appliance extract` of every file
of a saved ext4 partition onto another filesystem, against `appliance restore` of the same
image onto a blank disk (which writes the partition's used data). Alone:

    sudo python3 -m bench.copyout [--rounds N] [--work DIR]

builds (once, kept in DIR) a 1.5 GiB disk with one ext4 partition holding 768 MiB of
incompressible files of 32 MiB and 3,000 small ones, saves it into a repository, then runs,
interleaved and each after a dropped page cache: extract of "/" into a fresh folder of an ext4
on another loop device, and a restore onto a blank loop disk. Both loop devices use direct
I/O, as a real disk has one page cache, not two. The figures: the copy-out's rate (bytes of
files per second) as a share of the restore's (bytes of used data per second), over each whole
command and while the bytes move (from their progress lines: the copy from its first file to
its flush, the restore's writing phase), which leaves out what each command does once
whatever the size: start, mount, table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
from pathlib import Path

from bench.jobs import appliance, appliance_env, blank_target, result_of
from bench.measure import Run, timed
from bench.sh import BenchError, Loops, log, mounted, partition_node, run

MiB = 1 << 20
DISK = 1536 * MiB


def _build(loops: Loops, work: Path) -> Path:
    """The saved disk's repository (built once)."""
    repo = work / "repo"
    if (repo / "images" / "files" / "manifest.json").exists():
        return repo
    disk_file = work / "files-disk.img"
    disk_file.unlink(missing_ok=True)
    with open(disk_file, "wb") as f:
        f.truncate(DISK)
    loop = loops.attach(disk_file, direct_io=False)
    try:
        run(["sfdisk", "-q", loop.node], stdin=b"label: gpt\nstart=2048, type=linux\n")
        loops.rescan(loop)
        part = partition_node(loop.node, 1)
        run(["mkfs.ext4", "-q", "-F", "-L", "files", part])
        rng = random.Random(13)
        with mounted(part, work / "fill", "ext4") as root:
            for n in range(24):
                (root / "big").mkdir(exist_ok=True)
                (root / "big" / f"file-{n:02d}.bin").write_bytes(os.urandom(32 * MiB))
            for n in range(3000):
                folder = root / "small" / f"dir{n % 30:02d}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"doc-{n:04d}.txt").write_bytes(rng.randbytes(rng.randint(1, 32_000)))
        shutil.rmtree(repo, ignore_errors=True)
        run(appliance("save", loop.node, "--repo", str(repo), "--image", "files", "--create",
                      "--progress", "none"), env=appliance_env(work))  # fmt: skip
    finally:
        loops.detach(loop)
    return repo


def measure(work: Path, rounds: int) -> dict[str, float]:
    work.mkdir(parents=True, exist_ok=True)
    loops = Loops()
    try:
        repo = _build(loops, work)
        dest_file = work / "dest.img"
        dest_file.unlink(missing_ok=True)
        with open(dest_file, "wb") as f:
            f.truncate(2 * DISK)
        dest = loops.attach(dest_file, direct_io=True)  # as a real disk: one page cache
        run(["mkfs.ext4", "-q", "-F", dest.node])
        target = blank_target(loops, work / "target.img", DISK)
        copy_rates, restore_rates, copy_moving, restore_moving = [], [], [], []
        with mounted(dest.node, work / "dest", "ext4") as dest_root:
            for n in range(rounds):
                out = dest_root / f"round-{n}"
                r = timed(f"extract {n}", appliance(
                    "extract", "--repo", str(repo), "--image", "files", "--partition", "1", "/",
                    "--to", str(out), "--json", "--progress", "json",
                ), env=appliance_env(work))  # fmt: skip
                result = result_of(r)
                copied = result["bytes"]
                copy_rates.append(copied / r.seconds)
                copy_moving.append(copied / _moving(r, "extract", "done"))  # its sync too
                shutil.rmtree(out)
                r = timed(f"restore {n}", appliance(
                    "restore", "--repo", str(repo), "--image", "files", target.node, "--yes",
                    "--progress", "json", "--json",
                ), env=appliance_env(work))  # fmt: skip
                result = result_of(r)
                restore_rates.append(result["bytes"] / r.seconds)
                restore_moving.append(result["bytes"] / _moving(r, "restore", None))
                log(f"round {n}: extract {copy_rates[-1] / 1e6:.0f} MB/s "
                    f"({copy_moving[-1] / 1e6:.0f} while copying), restore "
                    f"{restore_rates[-1] / 1e6:.0f} MB/s ({restore_moving[-1] / 1e6:.0f} while "
                    "writing)")  # fmt: skip
        copy, whole = statistics.median(copy_rates), statistics.median(restore_rates)
        copying, writing = statistics.median(copy_moving), statistics.median(restore_moving)
        return {
            "extract_rate": copy,
            "restore_rate": whole,
            "share": copy / whole,
            "extract_moving_rate": copying,
            "restore_moving_rate": writing,
            "moving_share": copying / writing,
        }
    finally:
        loops.close()


def _moving(r: Run, start: str, end: str | None) -> float:
    """Seconds from the job's first `start` progress event (its bytes begin to move) to the
    first later event of phase `end` (None: of any other phase)."""
    began = None
    for line in r.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or event.get("type") != "progress":
            continue
        phase, at = event.get("phase"), float(event.get("elapsed", 0))
        if began is None:
            began = at if phase == start else None
        elif phase != start and (end is None or phase == end):
            return at - began
    raise BenchError(f"{r.label} did not report its {start} phase and the one after it")


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.copyout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/appliance-bench-copyout"))
    args = parser.parse_args()
    figures = measure(args.work, args.rounds)
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
whatever the size: start, mount, table. A third command, interleaved too, is the floor of any
file copy here: `cp -a` of the same files from the restored partition (a plain ext4 on a loop
disk, no image between) onto the same destination, with its flush. And the folder of large
files alone (`/big`, what photos, videos and archives are): its copy against the restore.
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
from bench.sh import BenchError, Loop, Loops, log, mounted, partition_node, run

MiB = 1 << 20
KEYS = ("extract", "extract_moving", "big", "big_moving", "restore", "restore_moving", "plain")
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
        rates: dict[str, list[float]] = {key: [] for key in KEYS}
        with mounted(dest.node, work / "dest", "ext4") as dest_root:
            for n in range(rounds):
                copied, moving = _extract(repo, work, dest_root / f"round-{n}", "/")
                rates["extract"].append(copied / moving[0])
                rates["extract_moving"].append(copied / moving[1])
                big, big_moving = _extract(repo, work, dest_root / f"big-{n}", "/big")
                rates["big"].append(big / big_moving[0])
                rates["big_moving"].append(big / big_moving[1])
                r = timed(f"restore {n}", appliance(
                    "restore", "--repo", str(repo), "--image", "files", target.node, "--yes",
                    "--progress", "json", "--json",
                ), env=appliance_env(work))  # fmt: skip
                result = result_of(r)
                rates["restore"].append(result["bytes"] / r.seconds)
                rates["restore_moving"].append(result["bytes"] / _moving(r, "restore", None))
                rates["plain"].append(copied / _plain_copy(loops, target, work, dest_root, n))
                log(f"round {n}: " + ", ".join(
                    f"{key} {rates[key][-1] / 1e6:.0f} MB/s" for key in KEYS
                ))  # fmt: skip
        got = {f"{key}_rate": statistics.median(rates[key]) for key in KEYS}
        return {
            **got,
            "share": got["extract_rate"] / got["restore_rate"],
            "moving_share": got["extract_moving_rate"] / got["restore_moving_rate"],
            "big_share": got["big_rate"] / got["restore_rate"],
            "big_moving_share": got["big_moving_rate"] / got["restore_moving_rate"],
            "plain_share": got["extract_rate"] / got["plain_rate"],
        }
    finally:
        loops.close()


def _extract(repo: Path, work: Path, out: Path, folder: str) -> tuple[int, tuple[float, float]]:
    """`appliance extract` of `folder` into `out` (removed after): the bytes copied, and the
    seconds of the whole command and of its copy from the first file to its flush."""
    r = timed(f"extract {out.name}", appliance(
        "extract", "--repo", str(repo), "--image", "files", "--partition", "1", folder,
        "--to", str(out), "--json", "--progress", "json",
    ), env=appliance_env(work))  # fmt: skip
    copied = int(result_of(r)["bytes"])
    shutil.rmtree(out)
    return copied, (r.seconds, _moving(r, "extract", "done"))  # its flush too


def _plain_copy(loops: Loops, target: Loop, work: Path, dest_root: Path, n: int) -> float:
    """Seconds `cp -a` takes to copy every file of the partition just restored onto `target`
    into the destination, with its flush: the same files with no image in between (a plain
    ext4 on a disk), what any file copy costs on this machine."""
    loops.rescan(target)
    out = dest_root / f"plain-{n}"
    with mounted(partition_node(target.node, 1), work / "restored", "ext4", read_only=True) as src:
        r = timed(f"cp -a {n}", ["sh", "-c", f'cp -a "{src}/." "{out}" && sync -f "{out}"'])
    shutil.rmtree(out)
    return r.seconds


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

"""The competing commands, each one timed process after a dropped page cache.

Ours: `python3 -m appliance.cli save|restore ...` from this working tree.
Clonezilla's pipeline (what `ocs-sr` runs for a partclone + zstd image):
  save:    sfdisk --dump DISK > sfdisk.dump; per partition
           partclone.<fs> -c -s PART -o - | zstd -T0 -3 > pN.pc.zst; sync
  restore: sfdisk DISK < sfdisk.dump; partx; per partition
           zstd -dc pN.pc.zst | partclone.<fs> -r -s - -o PART; sync
The limit: the O_DIRECT read of the used data (bench.rawread), and dd of the whole disk.
"""

from __future__ import annotations

import compileall
import contextlib
import json
import os
import shlex
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.fs.usedmap import PARTCLONE_PROGRAM, used_map
from bench.build import DiskImage
from bench.measure import Run, timed
from bench.rawread import UsedWindow, read_requests, used_windows
from bench.sh import BenchError, Loop, Loops, drop_caches, partition_node, run

PROJECT = Path(__file__).resolve().parent.parent
_engine = PROJECT
_workers: int | None = None


def set_engine(folder: Path) -> None:
    """Run the appliance commands from another checkout (an engine change, before it lands)."""
    global _engine
    if not any((folder / "appliance" / where).is_file() for where in ("cli.py", "cli/main.py")):
        raise BenchError(f"{folder} holds no appliance command line.")
    _engine = folder.resolve()


def compile_engine() -> None:
    """Byte-compile the engine under test, as the live ISO installs it (`compileall` in its
    build hook): with PYTHONDONTWRITEBYTECODE set and no __pycache__, every command would
    compile its modules from source first (about 0.1 s of each run here)."""
    compileall.compile_dir(str(_engine / "appliance"), quiet=2)


def set_workers(count: int | None) -> None:
    """Run every save and restore with `--workers COUNT` (the engine's scaling with cores)."""
    global _workers
    _workers = count


def engine() -> Path:
    return _engine


@dataclass
class Part:
    number: int
    node: str
    fstype: str
    start: int
    size: int
    used: list[tuple[int, int]]  # relative to the partition start (the engine's map)


@dataclass
class Disk:
    """An attached benchmark disk and its used data."""

    loop: Loop
    image: DiskImage
    parts: list[Part] = field(default_factory=list)
    windows: list[UsedWindow] = field(default_factory=list)

    @property
    def node(self) -> str:
        return self.loop.node

    @property
    def used_bytes(self) -> int:
        return sum(n for p in self.parts for _, n in p.used)


def attach(loops: Loops, image: DiskImage, *, read_only: bool = True) -> Disk:
    """Attach with direct I/O and read the used-block maps the way the engine does."""
    loop = loops.attach(image.path, read_only=read_only, direct_io=True)
    disk = Disk(loop, image)
    for spec in image.parts:
        node = partition_node(loop.node, spec.number)
        umap = used_map(node, spec.fstype, spec.size)
        disk.parts.append(
            Part(spec.number, node, spec.fstype, spec.start, spec.size, list(umap.ranges))
        )
    disk.windows = used_windows([(p.start, p.size, p.used) for p in disk.parts])
    return disk


def blank_target(loops: Loops, path: Path, size: int) -> Loop:
    """A new sparse file of `size` bytes (all zeros), attached with direct I/O."""
    with open(path, "wb") as handle:
        handle.truncate(size)
    return loops.attach(path, direct_io=True)


def wipe(loop: Loop) -> None:
    """Make an attached target blank again: no kernel partitions, every byte discarded."""
    run(["partx", "--delete", loop.node], check=False)
    run(["blkdiscard", "--force", loop.node])


def appliance_env(work: Path, first: Path | None = None) -> dict[str, str]:
    """The environment of a child: `first` (default: the engine under test) leads the path."""
    env = dict(os.environ)
    path = [str(first or _engine), str(PROJECT)]
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    env["APPLIANCE_LOG"] = str(work / "appliance-internal-errors.log")
    env["APPLIANCE_PASSPHRASE"] = BENCH_PASSPHRASE  # the encrypted repositories' (no prompt)
    return env


BENCH_PASSPHRASE = "bench only: not a secret"


def init_encrypted(repo: Path, work: Path) -> None:
    """A new encrypted repository (format v2) for the encrypted save and restore runs."""
    run(appliance("init", "--repo", str(repo), "--encrypt"), cwd=_engine, env=appliance_env(work))


def appliance(*args: str) -> list[str]:
    """The command line of `appliance ARGS` (a save or restore with the set --workers)."""
    job = args[:1] in (("save",), ("restore",))
    extra = ["--workers", str(_workers)] if _workers and job else []
    return [sys.executable, "-m", "appliance.cli", *args, *extra]


def result_of(run_: Run) -> dict[str, Any]:
    for line in reversed(run_.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            data: dict[str, Any] = json.loads(line)
            if data.get("type") == "result":
                return data
    raise BenchError(f"{run_.label} printed no JSON result: {run_.stdout[-500:]!r}")


def our_save(
    disk: Disk, repo: Path, image: str, work: Path, label: str, *extra: str
) -> tuple[Run, dict[str, Any]]:
    """One `appliance save` (`extra`: more options, e.g. --no-check); its result, with the
    moments its phases began (`phases`: name -> seconds since the process started, from the
    JSON progress lines), and each partition's proof (`proofs`: region -> proof)."""
    r = timed(
        label,
        appliance(
            "save",
            disk.node,
            "--repo",
            str(repo),
            "--image",
            image,
            "--create",
            "--progress",
            "json",
            "--json",
            *extra,
        ),
        cwd=_engine,
        env=appliance_env(work),
    )
    result = result_of(r)
    result["phases"] = phase_starts(r, result)
    return r, result


def phase_starts(r: Run, result: dict[str, Any]) -> dict[str, float]:
    """When each phase of a job run with `--progress json --json` began: seconds since its
    process started, from the JSON progress lines."""
    # progress "elapsed" counts from the job's start; the process started earlier (imports)
    offset = max(0.0, r.seconds - float(result.get("seconds", r.seconds)))
    phases: dict[str, float] = {}
    for line in r.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("type") == "progress":
            phases.setdefault(str(event.get("phase")), offset + float(event.get("elapsed", 0)))
    return phases


def move_phase_busy(r: Run, result: dict[str, Any], cores: int) -> float | None:
    """CPU busy share while the save moved bytes (from its "save" phase to its "sync")."""
    phases = result.get("phases", {})
    start, end = phases.get("save"), phases.get("sync")
    if start is None or end is None or end <= start:
        return None
    return float(r.cpu_between(float(start), float(end)) / ((end - start) * cores))


def our_restore(repo: Path | str, image: str, target: Loop, work: Path, label: str) -> Run:
    r = timed(
        label,
        appliance(
            "restore",
            "--repo",
            str(repo),
            "--image",
            image,
            target.node,
            "--yes",
            "--progress",
            "none",
            "--json",
        ),
        cwd=_engine,
        env=appliance_env(work),
    )
    result_of(r)
    return r


def program(fstype: str) -> str:
    prog = PARTCLONE_PROGRAM.get(fstype)
    if prog is None:
        raise BenchError(f"partclone has no program for {fstype}.")
    return prog


CZ_DISK = "sda"  # the disk's name in the Clonezilla folder (ocs-sr names files after it)


def cz_stream(folder: Path, part: Part) -> Path:
    """A partition's stream in the folder, named as ocs-sr names it (sda2.ext4-ptcl-img.zst)."""
    return folder / f"{CZ_DISK}{part.number}.{part.fstype}-ptcl-img.zst"


def cz_save(disk: Disk, folder: Path, label: str) -> Run:
    """What ocs-sr savedisk runs for a partclone + zstd image, into a folder laid out as its
    own (disk, parts, clonezilla-img, sda-pt.sf, sda-mbr, the streams), so the appliance can
    restore the same folder as a Clonezilla image."""
    folder.mkdir(parents=True, exist_ok=True)
    q = shlex.quote
    out = q(str(folder))
    parts = " ".join(f"{CZ_DISK}{p.number}" for p in disk.parts)
    lines = [
        "set -euo pipefail",
        # the dump names the partitions as Clonezilla's does: /dev/sda1, not /dev/loop5p1
        f"sfdisk --dump {q(disk.node)} | sed -e 's#^{disk.node}p\\?\\([0-9]\\)#/dev/{CZ_DISK}\\1#' "
        f"-e 's#^device: {disk.node}$#device: /dev/{CZ_DISK}#' > {out}/{CZ_DISK}-pt.sf",
        f"dd if={q(disk.node)} of={out}/{CZ_DISK}-mbr bs=512 count=1 status=none",
        f"echo {CZ_DISK} > {out}/disk",
        f"echo {q(parts)} > {out}/parts",
        f"echo 'Image saved by bench (ocs-sr savedisk equivalent)' > {out}/clonezilla-img",
    ]
    for p in disk.parts:
        base = q(str(folder / f"{CZ_DISK}{p.number}"))
        lines.append(
            f"{program(p.fstype)} -c -s {q(p.node)} -o - -L {base}.log 2>{base}.err "
            f"| zstd -T0 -3 -q > {q(str(cz_stream(folder, p)))}"
        )
    lines.append("sync")
    return timed(label, ["bash", "-c", "\n".join(lines)])


def cz_restore(disk: Disk, folder: Path, target: Loop, label: str) -> Run:
    q = shlex.quote
    node = q(target.node)
    lines = [
        "set -euo pipefail",
        f"sfdisk --force --no-reread --no-tell-kernel -q {node} < {q(str(folder))}/{CZ_DISK}-pt.sf",
        f"partx --add {node}",
    ]
    for p in disk.parts:
        part = q(partition_node(target.node, p.number))
        base = q(str(folder / f"{CZ_DISK}{p.number}"))
        lines.append(f"for i in $(seq 250); do [ -b {part} ] && break; sleep 0.02; done")
        lines.append(
            f"zstd -dc {q(str(cz_stream(folder, p)))} | {program(p.fstype)} -r -s - -o {part} "
            f"-L {base}.restore.log 2>{base}.restore.err"
        )
    lines.append("sync")
    return timed(label, ["bash", "-c", "\n".join(lines)])


def cz_size(folder: Path) -> int:
    """The bytes of a Clonezilla image: its streams and its table dump."""
    return sum(
        p.stat().st_size
        for p in folder.iterdir()
        if "-ptcl-img." in p.name or p.name.endswith("-pt.sf")
    )


def raw_read(disk: Disk, work: Path, label: str) -> Run:
    ranges = work / f"ranges-{disk.image.name}.json"
    if not ranges.exists():
        ranges.write_text(json.dumps(read_requests(disk.windows)))
    return timed(
        label,
        [sys.executable, "-m", "bench.rawread", disk.node, str(ranges)],
        cwd=PROJECT,
        env=appliance_env(work, first=PROJECT),
    )


def machine_limits(disk: Disk, target: Loop | None, work: Path) -> dict[str, float]:
    """bench.limits on the disk's used data: the compression, decompression and write rates
    the save and the restore are judged against (overwrites `target`; None: no write)."""
    parts = work / f"parts-{disk.image.name}.json"
    if not parts.exists():
        parts.write_text(json.dumps([[p.start, p.size, p.used] for p in disk.parts]))
    drop_caches()
    done = run(
        [
            sys.executable,
            "-m",
            "bench.limits",
            disk.node,
            target.node if target else "-",
            str(parts),
            "--scratch",
            str(work / "limits-scratch"),
        ],
        cwd=PROJECT,
        env=appliance_env(work, first=PROJECT),
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def dd_read(disk: Disk, label: str) -> Run:
    return timed(
        label, ["dd", f"if={disk.node}", "of=/dev/null", "bs=4M", "iflag=direct", "status=none"]
    )


MEMORY = Path("/dev/shm")  # tmpfs on Debian


@contextlib.contextmanager
def in_memory(repo: Path) -> Iterator[Path]:
    """A copy of the repository folder `repo` in memory (tmpfs: what no page-cache drop
    empties), removed afterwards: a stand-in for a repository on another device than the
    disk being saved or written (a USB disk, a server), which this machine does not have."""
    if not MEMORY.is_dir():
        raise BenchError(f"{MEMORY} is not there: no tmpfs for the in-memory repository runs.")
    copy = MEMORY / f"appliance-bench-{os.getpid()}-{repo.name}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(repo, copy)
    try:
        yield copy
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def tree_bytes(folder: Path) -> int:
    """Bytes in the files under `folder` (what the image costs on the repository's disk)."""
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total

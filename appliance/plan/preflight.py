"""Before a save: what the image will hold, whether it fits, and what the user should know.

`preflight_save` measures every partition of the source (the same used-block maps the save
will use, or the filesystem's own counters when it is mounted), compares the estimate with
the repository's free space, and looks for what makes an image less than it seems: Windows
hibernated (Fast Startup) or not shut down cleanly, BitLocker or LUKS volumes, filesystems
that will be copied whole. It returns data (`Preflight`, `Finding`), each finding with one
sentence for people; it never writes anything.
"""

from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.disk.model import Disk, Partition
from appliance.disk.usage import mounted_devnums, nearest_existing
from appliance.errors import ApplianceError, RepositoryError, SafetyRefusal, ToolMissing
from appliance.fs.kinds import MAPPABLE, kind_of
from appliance.fs.ntfs import NTFS_DIRTY, read_volume_info
from appliance.fs.usedmap import used_map
from appliance.plan.regions import data_partitions, outside_ranges
from appliance.plan.safety import check_source
from appliance.repo.repository import check_save_place
from appliance.tools import which
from appliance.units import human_size

# A raw copy smaller than this (Microsoft reserved, BIOS boot) is only worth an "info".
SMALL_RAW = 128 * 1024 * 1024
LEVELS = ("info", "warning", "stop")


@dataclass(frozen=True)
class Usage:
    """How much of one region the image will hold."""

    partition: int | None  # None: the table and boot areas (or a disk with no table)
    node: str
    size: int
    used: int | None  # bytes the image will hold; None when it could not be measured
    method: str  # "partclone", "raw", "swap", "mounted", "table", "unknown"
    note: str | None = None  # why, in a sentence (raw because dirty, unreadable, ...)


@dataclass(frozen=True)
class Finding:
    code: str  # space, space-unknown, hibernated, dirty, encrypted, raw, ...
    level: str  # "info", "warning" or "stop"
    sentence: str
    partition: int | None = None


@dataclass(frozen=True)
class Preflight:
    disk: Disk
    repo: str
    usage: tuple[Usage, ...]
    estimate: int  # upper bound of the bytes the image adds to the repository
    free: int | None  # free bytes where the repository is (None: unknown)
    findings: tuple[Finding, ...]

    @property
    def blocked(self) -> bool:
        """A finding forbids the save (it would be refused or could not work)."""
        return any(f.level == "stop" for f in self.findings)

    def worst(self) -> str:
        levels = [LEVELS.index(f.level) for f in self.findings]
        return LEVELS[max(levels)] if levels else "ok"


@dataclass(frozen=True)
class NtfsState:
    dirty: bool | None  # the volume's dirty flag (None: could not be read)
    hibernated: bool | None  # hiberfil.sys says "hibr" (None: could not be checked)


Measure = Callable[[Disk, Partition], Usage]
NtfsProbe = Callable[[str], NtfsState]


def free_space(path: str | os.PathLike[str]) -> int | None:
    """Free bytes for an unprivileged writer where `path` (or its nearest parent) lives."""
    try:
        stat = os.statvfs(nearest_existing(Path(path)))
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def _mounted_usage(part: Partition, mountpoint: str) -> Usage | None:
    try:
        stat = os.statvfs(mountpoint)
    except OSError:
        return None
    used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    return Usage(
        part.number,
        part.node,
        part.size,
        min(used, part.size),
        "mounted",
        f"mounted at {mountpoint}; measured from the filesystem's counters",
    )


def measure_partition(disk: Disk, part: Partition) -> Usage:
    """The bytes of `part` an image holds: partclone's map, all of it, or none (swap)."""
    if part.fstype == "swap":
        return Usage(part.number, part.node, part.size, 0, "swap", "recreated, not copied")
    if part.node:
        try:
            devnum = os.stat(part.node).st_rdev
            mounts = mounted_devnums()
            where = mounts.get((os.major(devnum), os.minor(devnum)))
        except OSError:
            where = None
        if where is not None:
            measured = _mounted_usage(part, where)
            if measured is not None:
                return measured
    if part.fstype not in MAPPABLE:
        return Usage(part.number, part.node, part.size, part.size, "raw")
    if not part.node:
        return Usage(
            part.number, part.node, part.size, None, "unknown", "the kernel has no device for it"
        )
    try:
        umap = used_map(part.node, part.fstype, part.size, align=disk.logical_sector)
    except ApplianceError as exc:
        return Usage(part.number, part.node, part.size, part.size, "raw", f"copied whole: {exc}")
    note = "the filesystem was not shut down cleanly" if umap.method == "raw" else None
    return Usage(part.number, part.node, part.size, umap.used_bytes, umap.method, note)


def measure_disk(disk: Disk, measure: Measure = measure_partition) -> list[Usage]:
    """The table region, then each data partition."""
    if disk.table is None:
        return [
            Usage(
                None,
                disk.node,
                disk.size,
                disk.size,
                "raw",
                "the disk has no partition table, so it is copied whole",
            )
        ]
    outside = sum(length for _, length in outside_ranges(disk))
    out = [Usage(None, disk.node, disk.size, outside, "table")]
    out.extend(measure(disk, part) for part in data_partitions(disk))
    return out


# -- NTFS: the dirty flag of $Volume (appliance/fs/ntfs.py), and hiberfil.sys ----------------
def hiberfile_magic(node: str) -> bytes | None:
    """The first 4 bytes of hiberfil.sys in the NTFS root, or None when there is none."""
    program = which("ntfscat")
    # Only the first bytes matter: read them and stop ntfscat (the file can be gigabytes).
    with subprocess.Popen(
        [program, "--force", node, "hiberfil.sys"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None
        head = proc.stdout.read(4)
        proc.kill()
    return head if len(head) == 4 else None


def ntfs_state(node: str) -> NtfsState:
    try:
        dirty: bool | None = bool(read_volume_info(node).flags & NTFS_DIRTY)
    except (OSError, ValueError, struct.error):
        dirty = None
    try:
        magic = hiberfile_magic(node)
        hibernated: bool | None = magic is not None and magic.lower() == b"hibr"
    except (OSError, ToolMissing):
        hibernated = None
    return NtfsState(dirty, hibernated)


# -- the findings --------------------------------------------------------------------------
def _name(part: Partition) -> str:
    what = part.fstype or "unformatted"
    label = f", {part.label}" if part.label else ""
    return f"partition {part.number} ({what}{label})"


def _ntfs_findings(part: Partition, state: NtfsState) -> list[Finding]:
    out: list[Finding] = []
    if state.hibernated:
        out.append(
            Finding(
                "hibernated",
                "warning",
                (
                    f"Windows on {_name(part)} is hibernated (Fast Startup): the image holds "
                    "Windows as it was suspended, and files saved since may be missing; start "
                    "Windows, turn off Fast Startup, shut down, then save."
                ),
                part.number,
            )
        )
    if state.dirty:
        out.append(
            Finding(
                "dirty",
                "warning",
                (
                    f"{_name(part).capitalize()} was not shut down cleanly, so it will be copied "
                    f"whole ({human_size(part.size)}) and Windows will check it at its next start."
                ),
                part.number,
            )
        )
    if state.hibernated is None and state.dirty is None:
        out.append(
            Finding(
                "ntfs-unknown",
                "info",
                (f"Whether Windows on {_name(part)} is hibernated could not be checked."),
                part.number,
            )
        )
    return out


def _partition_findings(part: Partition, usage: Usage | None, ntfs: NtfsProbe) -> list[Finding]:
    encryption = kind_of(part.fstype)
    if encryption is not None and encryption.encrypted:
        kind = encryption.encrypted
        return [
            Finding(
                "encrypted",
                "warning",
                (
                    f"{_name(part).capitalize()} is encrypted with {kind}: it is copied whole "
                    f"({human_size(part.size)}), and the restored copy needs the same key or "
                    "recovery key."
                ),
                part.number,
            )
        ]
    out: list[Finding] = []
    if part.fstype == "ntfs" and part.node:
        out.extend(_ntfs_findings(part, ntfs(part.node)))
    if usage is None:
        return out
    if usage.used is None:
        out.append(
            Finding(
                "unmeasured",
                "warning",
                (f"The used space of {_name(part)} could not be measured ({usage.note})."),
                part.number,
            )
        )
    elif usage.method == "raw" and not any(f.code == "dirty" for f in out):
        why = usage.note or (
            "the appliance cannot read which blocks of this filesystem are used"
            if part.fstype
            else "it holds no filesystem"
        )
        level = "info" if part.size <= SMALL_RAW else "warning"
        out.append(
            Finding(
                "raw",
                level,
                (
                    f"{_name(part).capitalize()} will be copied whole ({human_size(part.size)}): "
                    f"{why.removeprefix('copied whole: ').rstrip('.')}."
                ),
                part.number,
            )
        )
    return out


def _space_findings(estimate: int, free: int | None, repo: str) -> list[Finding]:
    if free is None:
        return [
            Finding(
                "space-unknown",
                "warning",
                f"The free space of the repository {repo} could not be read.",
            )
        ]
    if free < estimate:
        return [
            Finding(
                "space",
                "warning",
                (
                    f"The image holds up to {human_size(estimate)} and the repository has "
                    f"{human_size(free)} free: it fits only if compression and deduplication save "
                    "the difference; if it fills up, the image stays incomplete and can be resumed "
                    "elsewhere."
                ),
            )
        ]
    return [
        Finding(
            "space",
            "info",
            (
                f"The image holds up to {human_size(estimate)} (less after compression and "
                f"deduplication); the repository has {human_size(free)} free."
            ),
        )
    ]


def preflight_save(
    disk: Disk,
    repo_path: str,
    *,
    measure: Measure = measure_partition,
    ntfs: NtfsProbe = ntfs_state,
) -> Preflight:
    """Everything worth knowing before saving `disk` into the repository at `repo_path`."""
    findings: list[Finding] = []
    try:
        check_source(disk, Path(repo_path))
    except SafetyRefusal as exc:
        findings.append(Finding("refused", "stop", str(exc)))
    try:  # the interface creates the repository, but never in RAM
        check_save_place(Path(repo_path), create=True)
    except RepositoryError as exc:
        findings.append(Finding("ram", "stop", str(exc)))
    usage = measure_disk(disk, measure)
    by_number = {u.partition: u for u in usage if u.partition is not None}
    for part in data_partitions(disk):
        findings.extend(_partition_findings(part, by_number.get(part.number), ntfs))
    if disk.table is None:
        findings.append(
            Finding(
                "raw",
                "warning",
                (
                    f"{disk.describe()} has no partition table, so every byte of it is copied "
                    f"({human_size(disk.size)})."
                ),
            )
        )
    estimate = sum(u.used if u.used is not None else u.size for u in usage)
    free = free_space(repo_path)
    findings.extend(_space_findings(estimate, free, repo_path))
    order = {level: index for index, level in enumerate(reversed(LEVELS))}
    findings.sort(key=lambda f: order[f.level])
    return Preflight(disk, repo_path, tuple(usage), estimate, free, tuple(findings))

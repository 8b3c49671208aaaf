"""Every guard between a user and a destroyed disk. Each check raises SafetyRefusal with one
sentence, before a byte is written.

Rules: never write to the source of the same job, the disk that holds the repository, the
disk the appliance booted from, or a disk with a mounted or in-use (swap, LVM, RAID, dm)
partition; never restore onto a disk that is too small or has another sector size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import SafetyRefusal
from appliance.model import Disk, human_size

SYS = Path("/sys")
LIVE_MEDIUM = ("/run/live/medium", "/lib/live/mount/medium")


def _devnum(text: str) -> tuple[int, int]:
    major, minor = text.strip().split(":")
    return int(major), int(minor)


def disk_names_of_devnum(devnum: tuple[int, int], sys_root: Path = SYS,
                         depth: int = 0) -> set[str]:
    """The whole disks a block device lives on: through partitions, loop backing files and
    device-mapper / RAID members."""
    link = sys_root / "dev" / "block" / f"{devnum[0]}:{devnum[1]}"
    if depth > 8 or not link.exists():
        return set()
    node = link.resolve()
    if (node / "partition").exists():
        node = node.parent
    names = {node.name}
    backing = node / "loop" / "backing_file"
    if backing.exists():
        names |= disks_of_path(Path(backing.read_text().strip()), sys_root, depth + 1)
    slaves = node / "slaves"
    if slaves.is_dir():
        for slave in slaves.iterdir():
            dev = slave / "dev"
            if dev.exists():
                names |= disk_names_of_devnum(_devnum(dev.read_text()), sys_root, depth + 1)
    return names


def disks_of_path(path: Path, sys_root: Path = SYS, depth: int = 0) -> set[str]:
    """The whole disks that hold the file or folder `path` (empty for tmpfs, network...)."""
    try:
        st = os.stat(path)
    except OSError:
        return set()
    dev = st.st_dev
    return disk_names_of_devnum((os.major(dev), os.minor(dev)), sys_root, depth)


def disk_devnums(disk_name: str, sys_root: Path = SYS) -> set[tuple[int, int]]:
    """Device numbers of the disk and of every partition the kernel knows on it."""
    base = sys_root / "block" / disk_name
    out: set[tuple[int, int]] = set()
    if (base / "dev").exists():
        out.add(_devnum((base / "dev").read_text()))
    if base.is_dir():
        for child in base.iterdir():
            if (child / "partition").exists() and (child / "dev").exists():
                out.add(_devnum((child / "dev").read_text()))
    return out


@dataclass(frozen=True)
class Mount:
    devnum: tuple[int, int]
    point: str
    options: tuple[str, ...]   # the per-mount options (rw or ro first)
    fstype: str


def mounts(mountinfo: str | None = None) -> list[Mount]:
    """Every mount of /proc/self/mountinfo, in its order."""
    text = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    out: list[Mount] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 5 and ":" in fields[2]:
            sep = fields.index("-", 6) if "-" in fields[6:] else -1
            fstype = fields[sep + 1] if 0 < sep < len(fields) - 1 else ""
            out.append(Mount(_devnum(fields[2]), fields[4].replace("\\040", " "),
                             tuple(fields[5].split(",")), fstype))
    return out


def mounted_devnums(mountinfo: str | None = None) -> dict[tuple[int, int], str]:
    """Device number -> mount point, from /proc/self/mountinfo."""
    out: dict[tuple[int, int], str] = {}
    for mount in mounts(mountinfo):
        out.setdefault(mount.devnum, mount.point)
    return out


def mounted_readonly(node: str, mountinfo: str | None = None) -> bool:
    """The block device `node` is mounted, and only read-only (nothing can change it)."""
    try:
        rdev = os.stat(node).st_rdev
    except OSError:
        return False
    found = [m for m in mounts(mountinfo) if m.devnum == (os.major(rdev), os.minor(rdev))]
    return bool(found) and all("ro" in m.options for m in found)


RAM_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})


def filesystem_type(path: Path, mountinfo: str | None = None) -> str | None:
    """The type of the filesystem that holds `path` (or its nearest existing parent)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        dev = os.stat(existing).st_dev
    except OSError:
        return None
    devnum = (os.major(dev), os.minor(dev))
    found = [m for m in mounts(mountinfo) if m.devnum == devnum]
    if not found:
        return None
    # the deepest mount point that contains the path is the one that holds it
    resolved = str(existing.resolve())
    inside = [m for m in found if resolved == m.point
              or resolved.startswith(m.point.rstrip("/") + "/")]
    return max(inside or found, key=lambda m: len(m.point)).fstype


def swap_devnums(swaps: str | None = None) -> set[tuple[int, int]]:
    text = swaps if swaps is not None else Path("/proc/swaps").read_text()
    out: set[tuple[int, int]] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if not fields:
            continue
        try:
            st = os.stat(fields[0].replace("\\040", " "))
        except OSError:
            continue
        if fields[1] == "partition":
            out.add((os.major(st.st_rdev), os.minor(st.st_rdev)))
        else:  # a swap file: the disk that holds it is in use
            out.add((os.major(st.st_dev), os.minor(st.st_dev)))
    return out


def holders(disk_name: str, sys_root: Path = SYS) -> list[str]:
    """Device-mapper, LVM or RAID devices built on the disk or its partitions."""
    base = sys_root / "block" / disk_name
    found: list[str] = []
    places = [base] + ([c for c in base.iterdir() if (c / "partition").exists()]
                       if base.is_dir() else [])
    for place in places:
        hold = place / "holders"
        if hold.is_dir():
            found.extend(h.name for h in hold.iterdir())
    return found


def check_not_in_use(disk: Disk, role: str = "target") -> None:
    nums = disk_devnums(disk.name)
    mounts = mounted_devnums()
    for num in sorted(nums):
        if num in mounts:
            raise SafetyRefusal(f"The {role} {disk.describe()} has a partition mounted at "
                                f"{mounts[num]}; unmount it first.")
    if nums & swap_devnums():
        raise SafetyRefusal(f"The {role} {disk.describe()} holds active swap; turn it off "
                            "with swapoff first.")
    users = holders(disk.name)
    if users:
        raise SafetyRefusal(f"The {role} {disk.describe()} is in use by {', '.join(users)} "
                            "(LVM, RAID or device-mapper); stop that first.")


def check_not_boot_medium(disk: Disk) -> None:
    for medium in LIVE_MEDIUM:
        if os.path.ismount(medium) and disk.name in disks_of_path(Path(medium)):
            raise SafetyRefusal(f"{disk.describe()} is the stick the appliance started from; "
                                "choose another disk.")


def check_not_repo_disk(disk: Disk, repo_path: Path, role: str = "target") -> None:
    existing = repo_path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if disk.name in disks_of_path(existing):
        raise SafetyRefusal(f"The {role} {disk.describe()} holds the repository {repo_path}; "
                            "choose another disk or another repository.")


def check_target(target: Disk, *, source: Disk | None = None, repo_path: Path | None = None,
                 needed_size: int | None = None, sector: int | None = None) -> None:
    """Every rule a disk that is about to be overwritten must pass."""
    if source is not None and source.devnum == target.devnum:
        raise SafetyRefusal(f"The target {target.describe()} is the source of this job; choose "
                            "another target.")
    if target.readonly:
        raise SafetyRefusal(f"The target {target.describe()} is read-only.")
    check_not_boot_medium(target)
    if repo_path is not None:
        check_not_repo_disk(target, repo_path)
    check_not_in_use(target)
    if sector is not None and sector != target.logical_sector:
        raise SafetyRefusal(f"The target {target.describe()} has {target.logical_sector}-byte "
                            f"sectors and the image has {sector}-byte sectors; use a disk with "
                            f"{sector}-byte sectors.")
    if needed_size is not None and target.size < needed_size:
        raise SafetyRefusal(f"The target {target.describe()} is too small: the image needs "
                            f"{human_size(needed_size)} ({needed_size} bytes).")


def check_source(source: Disk, repo_path: Path | None = None) -> None:
    """A save never writes its source (the repository may not live on it), and neither a save
    nor a clone reads a partition that is mounted read-write: the copy would be torn."""
    if repo_path is not None:
        check_not_repo_disk(source, repo_path, role="source")
    mounts = mounted_devnums()
    writable = _writable_mounts()
    for num in sorted(disk_devnums(source.name)):
        if num in mounts and mounts[num] in writable:
            raise SafetyRefusal(f"The source {source.describe()} has a partition mounted "
                                f"read-write at {mounts[num]}; unmount it (or mount it "
                                "read-only) so the image is consistent.")


def _writable_mounts() -> set[str]:
    return {mount.point for mount in mounts() if "rw" in mount.options}

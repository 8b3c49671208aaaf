"""What uses a disk, read from the kernel: the whole disks under a device or a path (through
partitions, loop backing files, device-mapper and RAID members), the mounts of
/proc/self/mountinfo, active swap, and holders. Facts only: the rules that act on them are in
appliance/plan/safety.py."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from appliance.disk.identity import parse_devnum

SYS = Path("/sys")
_OCTAL = re.compile(r"\\([0-7]{3})")  # mountinfo writes space, tab, newline, \ as \040 ...


def unescape(field: str) -> str:
    """A mountinfo or /proc/swaps field as the path it names: "a\\040b" -> "a b"."""
    return _OCTAL.sub(lambda found: chr(int(found.group(1), 8)), field)


def nearest_existing(path: Path) -> Path:
    """`path`, or its nearest parent that exists (a repository folder not made yet)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_names_of_devnum(devnum: tuple[int, int], sys_root: Path = SYS, depth: int = 0) -> set[str]:
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
                names |= disk_names_of_devnum(parse_devnum(dev.read_text()), sys_root, depth + 1)
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
        out.add(parse_devnum((base / "dev").read_text()))
    if base.is_dir():
        for child in base.iterdir():
            if (child / "partition").exists() and (child / "dev").exists():
                out.add(parse_devnum((child / "dev").read_text()))
    return out


@dataclass(frozen=True)
class Mount:
    devnum: tuple[int, int]
    point: str
    options: tuple[str, ...]  # the per-mount options (rw or ro first)
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
            out.append(
                Mount(
                    parse_devnum(fields[2]),
                    unescape(fields[4]),
                    tuple(fields[5].split(",")),
                    fstype,
                )
            )
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
    existing = nearest_existing(path)
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
    inside = [
        m for m in found if resolved == m.point or resolved.startswith(m.point.rstrip("/") + "/")
    ]
    return max(inside or found, key=lambda m: len(m.point)).fstype


def swap_devnums(swaps: str | None = None) -> set[tuple[int, int]]:
    text = swaps if swaps is not None else Path("/proc/swaps").read_text()
    out: set[tuple[int, int]] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if not fields:
            continue
        try:
            st = os.stat(unescape(fields[0]))
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
    places = [base] + (
        [c for c in base.iterdir() if (c / "partition").exists()] if base.is_dir() else []
    )
    for place in places:
        hold = place / "holders"
        if hold.is_dir():
            found.extend(h.name for h in hold.iterdir())
    return found

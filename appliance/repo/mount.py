"""A filesystem on another disk as the image repository: found, mounted, unmounted.

The repository may be a folder that is already mounted (a network share, the demo stick), or
a filesystem on a partition (or on a whole disk with no table) that the appliance mounts
itself under /run/appliance: read-write for a save, read-only for a restore or a verify. A
filesystem on the disk that a job saves or overwrites is never mounted for that job.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from appliance.disk import identity
from appliance.disk.fsprobe import probe_filesystem
from appliance.disk.model import Disk
from appliance.disk.usage import mounts as mounts_of
from appliance.errors import ApplianceError, DeviceError, RepositoryError, SafetyRefusal
from appliance.fs.kinds import REPOSITORY, kind_of
from appliance.repo.repository import holds_repository
from appliance.tools import run
from appliance.units import human_size

RUN_DIR = Path(os.environ.get("APPLIANCE_RUN_DIR", "/run/appliance"))
# Filesystems a repository can live on (appliance/fs/kinds.py says which).
MOUNTABLE = REPOSITORY
DEFAULT_FOLDER = "appliance-images"


@dataclass(frozen=True)
class Volume:
    """A filesystem that could hold a repository."""

    node: str  # /dev/sdb1, or /dev/sdb for a filesystem on the whole disk
    disk: str  # kernel name of the disk it is on
    disk_text: str  # the disk as people name it (model, serial, size, node)
    partition: int | None
    size: int
    fstype: str
    label: str | None
    mountpoint: str | None  # where it is mounted now, by anyone
    read_only: bool = False  # how it is mounted now

    def describe(self) -> str:
        label = f" {self.label}" if self.label else ""
        where = f"partition {self.partition}" if self.partition else "the whole disk"
        return f"{self.fstype}{label} ({human_size(self.size)}, {where} of {self.disk_text})"


@dataclass(frozen=True)
class MountInfo:
    mountpoint: str
    read_only: bool


def mount_table(text: str | None = None) -> dict[tuple[int, int], MountInfo]:
    """Device number -> first mount point and its mode, from /proc/self/mountinfo."""
    out: dict[tuple[int, int], MountInfo] = {}
    for mount in mounts_of(text):
        out.setdefault(mount.devnum, MountInfo(mount.point, "ro" in mount.options))
    return out


def _devnum(node: str) -> tuple[int, int] | None:
    try:
        rdev = os.stat(node).st_rdev
    except OSError:
        return None
    return os.major(rdev), os.minor(rdev)


def volumes(
    disks: Iterable[Disk],
    mounts: dict[tuple[int, int], MountInfo] | None = None,
    probe_whole: bool = True,
) -> list[Volume]:
    """Every filesystem on `disks` that a repository can live on."""
    mounts = mount_table() if mounts is None else mounts
    out: list[Volume] = []
    for disk in disks:
        found: list[tuple[str, int | None, int, str, str | None]] = []
        for part in disk.partitions:
            if part.node and part.fstype in MOUNTABLE:
                found.append((part.node, part.number, part.size, part.fstype, part.label))
        if disk.table is None and probe_whole:
            try:
                info = probe_filesystem(disk.node)
            except ApplianceError:
                info = None
            if info is not None and info.type in MOUNTABLE:
                found.append((disk.node, None, disk.size, info.type, info.label))
        for node, number, size, fstype, label in found:
            devnum = _devnum(node)
            mounted = mounts.get(devnum) if devnum else None
            out.append(
                Volume(
                    node,
                    disk.name,
                    disk.describe(),
                    number,
                    size,
                    fstype,
                    label,
                    mounted.mountpoint if mounted else None,
                    mounted.read_only if mounted else False,
                )
            )
    return out


def disk_of(node: str) -> str:
    """The kernel name of the whole disk that `node` (a partition or a disk) is on."""
    name = os.path.basename(os.path.realpath(node))
    if identity.is_partition(name):
        parent = identity.parent_disk(name)
        if parent is None:
            raise DeviceError(f"The disk that holds {node} cannot be found.")
        return parent
    return name


def check_not_on(node: str, disks: Iterable[str], role: str) -> None:
    """SafetyRefusal when filesystem `node` lives on one of `disks` (the job's own disks)."""
    disk = disk_of(node)
    if disk in set(disks):
        raise SafetyRefusal(
            f"{node} is on /dev/{disk}, the disk this job {role}; choose a "
            "repository on another disk."
        )


def find_repositories(root: Path, depth: int = 2) -> list[Path]:
    """Folders at most `depth` levels below `root` (root included) that hold a repository."""
    found: list[Path] = []
    level = [root]
    for _ in range(depth + 1):
        following: list[Path] = []
        for folder in level:
            if holds_repository(folder):
                found.append(folder)
                continue
            try:
                following.extend(
                    sorted(
                        p
                        for p in folder.iterdir()
                        if p.is_dir() and not p.is_symlink() and p.name != "lost+found"
                    )
                )
            except OSError:
                continue
        level = following
    return found


@dataclass
class RepoMount:
    """A mounted filesystem that holds (or will hold) the repository."""

    node: str
    mountpoint: Path
    writable: bool
    owned: bool  # mounted by the appliance (and so unmounted by it)
    fstype: str = ""

    def repositories(self) -> list[Path]:
        return find_repositories(self.mountpoint)

    def default_repository(self) -> Path:
        """The repository found on the filesystem, or where a new one would go."""
        found = self.repositories()
        return found[0] if found else self.mountpoint / DEFAULT_FOLDER

    def ensure(self, writable: bool) -> None:
        """Remount read-write (a save) or read-only (restore, verify) when it is ours."""
        if writable == self.writable:
            return
        if not self.owned:
            if writable:
                raise RepositoryError(
                    f"{self.node} is mounted read-only at {self.mountpoint} "
                    "by someone else; mount it read-write to save into it."
                )
            return  # someone else's read-write mount: reading from it is fine
        mode = "rw" if writable else "ro"
        kind = kind_of(self.fstype)
        if kind is not None and kind.fuse:  # FUSE cannot change its mode: mount again
            _unmount(self.mountpoint)
            _mount(self.node, self.mountpoint, self.fstype, writable)
        else:
            _run_mount(["mount", "-o", f"remount,{mode}", str(self.mountpoint)], self.node)
        self.writable = writable

    def unmount(self) -> None:
        """Unmount when the appliance mounted it (someone else's mount is left alone)."""
        if not self.owned:
            return
        _unmount(self.mountpoint)
        self.owned = False
        with contextlib.suppress(OSError):
            self.mountpoint.rmdir()


def _run_mount(args: list[str], node: str) -> None:
    try:
        run(args, timeout=120)
    except ApplianceError as exc:
        detail = str(exc).split(": ", 1)[-1]
        if "hibernat" in detail.lower() or "unclean" in detail.lower():
            raise RepositoryError(
                f"Windows left {node} hibernated or not shut down cleanly, "
                "so it cannot be written; start Windows and shut it down "
                "fully (no Fast Startup), or use another disk."
            ) from exc
        raise RepositoryError(f"{node} cannot be mounted: {detail}") from exc


def _mount(node: str, where: Path, fstype: str, writable: bool) -> None:
    mode = "rw" if writable else "ro"
    kind = kind_of(fstype)
    if kind is not None and kind.fuse:
        _run_mount(["ntfs-3g", "-o", mode, node, str(where)], node)
    else:
        _run_mount(
            ["mount", "-t", fstype, "-o", f"{mode},nodev,nosuid,noexec", node, str(where)], node
        )


def _unmount(where: Path) -> None:
    try:
        run(["umount", str(where)], timeout=120)
    except ApplianceError as exc:
        raise RepositoryError(
            f"The repository at {where} cannot be unmounted ({exc}); is a program still using it?"
        ) from exc


def mount_volume(
    node: str,
    *,
    writable: bool,
    fstype: str | None = None,
    avoid: Iterable[str] = (),
    role: str = "uses",
) -> RepoMount:
    """Mount the filesystem on `node` for a repository, or reuse where it is mounted now.

    `avoid`: kernel names of the disks the job saves or overwrites; a filesystem on one of
    them is refused before anything is mounted.
    """
    check_not_on(node, avoid, role)
    devnum = _devnum(node)
    if devnum is None:
        raise DeviceError(f"There is no device {node}; was it unplugged?")
    if fstype is None:
        fstype = probe_filesystem(node).type or ""
    current = mount_table().get(devnum)
    if current is not None:
        where = Path(current.mountpoint)
        owned = where.parent == RUN_DIR
        mount = RepoMount(node, where, not current.read_only, owned, fstype)
        mount.ensure(writable)
        return mount
    if fstype not in MOUNTABLE:
        raise RepositoryError(
            f"{node} holds no filesystem a repository can live on ({fstype or 'none found'})."
        )
    where = RUN_DIR / f"repo-{os.path.basename(node)}"
    where.mkdir(parents=True, exist_ok=True)
    _mount(node, where, fstype, writable)
    return RepoMount(node, where, writable, True, fstype)

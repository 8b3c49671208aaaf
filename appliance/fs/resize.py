"""Growing and shrinking filesystems with their own tools, and asking how small they can get.

Shrinking runs on a copy-on-write view of the source (appliance.io.cowview), never on a source;
growing runs on the target partition after its data is written.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from appliance.errors import ToolFailed
from appliance.fs.kinds import kind_of
from appliance.tools import run

MiB = 1024 * 1024


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _e2fsck(path: str) -> None:
    """e2fsck -f -y: resize2fs wants a freshly checked filesystem. Exit 0-2 means usable."""
    proc = run(["e2fsck", "-f", "-y", path], check=False, timeout=3600)
    if proc.returncode > 2:
        raise ToolFailed(
            f"e2fsck found errors it could not fix on {path}: "
            f"{_last_line(proc.stdout + proc.stderr)}"
        )


def min_size(path: str, fstype: str | None) -> int | None:
    """The smallest size (bytes) the filesystem can shrink to, with a margin; None if unknown."""
    kind = kind_of(fstype)
    if kind is None or not kind.shrink:
        return None
    if kind.family == "ext":
        out = run(["dumpe2fs", "-h", path], timeout=600).stdout
        block = int(re.search(r"Block size:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
        proc = run(["resize2fs", "-P", path], check=False, timeout=600)
        found = re.search(r"minimum size of the filesystem:\s*(\d+)", proc.stdout)
        if not found:
            return None
        blocks = int(found.group(1))
        return int(blocks * block * 1.05) + 16 * MiB
    if kind.family == "ntfs":
        proc = run(
            ["ntfsresize", "--info", "--force", "--no-progress-bar", path], check=False, timeout=600
        )
        found = re.search(r"resize at (\d+) bytes", proc.stdout)
        if not found:
            return None
        return int(int(found.group(1)) * 1.05) + 16 * MiB
    return None


def shrink(path: str, fstype: str | None, size: int) -> None:
    """Shrink the filesystem in `path` (a copy-on-write view) to `size` bytes."""
    kind = kind_of(fstype)
    family = kind.family if kind is not None and kind.shrink else None
    if family == "ext":
        _e2fsck(path)
        proc = run(["resize2fs", path, f"{size // 1024}K"], check=False, timeout=3 * 3600)
        if proc.returncode != 0:
            raise ToolFailed(
                f"resize2fs could not shrink the {fstype} filesystem: "
                f"{_last_line(proc.stderr + proc.stdout)}"
            )
        return
    if family == "ntfs":
        proc = run(
            ["ntfsresize", "--force", "--no-progress-bar", "--size", str(size), path],
            check=False,
            timeout=3 * 3600,
            input_text="",
        )
        if proc.returncode != 0:
            raise ToolFailed(
                f"ntfsresize could not shrink the NTFS filesystem: "
                f"{_last_line(proc.stderr + proc.stdout)}"
            )
        return
    raise ToolFailed(f"A {fstype or 'raw'} filesystem cannot be shrunk.")


GROW_MOUNTS = "/run"  # where a grow step mounts: appliance-grow-PID-XXXXXXXX
_GROW_POINT = re.compile(r"appliance-grow-(\d+)-[^/]+")


@contextlib.contextmanager
def _mounted(node: str) -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix=f"appliance-grow-{os.getpid()}-", dir=GROW_MOUNTS))
    run(["mount", node, str(where)], timeout=300)
    try:
        yield where
    finally:
        run(["umount", str(where)], check=False, timeout=300)
        with contextlib.suppress(OSError):
            where.rmdir()


def end_orphaned_grow_mount(point: str) -> bool:
    """Unmount `point` when it is a grow step's mount whose appliance process is gone (a
    restore killed while it grew an xfs or btrfs leaves the target's partition mounted, and
    the next restore onto that disk was refused: "unmount it first"). True when it was one
    and is gone now; any other mount is left as it is."""
    parent, _, name = point.rpartition("/")
    found = _GROW_POINT.fullmatch(name)
    if parent != GROW_MOUNTS or found is None or _alive(int(found.group(1))):
        return False
    if run(["umount", point], check=False, timeout=300).returncode != 0:
        return False
    with contextlib.suppress(OSError):
        os.rmdir(point)
    return True


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, killed and not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def grow(node: str, fstype: str | None) -> bool:
    """Grow the filesystem on partition `node` to fill it. False when it stays as it is."""
    kind = kind_of(fstype)
    if kind is None or not kind.grow:
        return False  # FAT, exFAT, swap, raw: the partition grows, the filesystem stays
    if kind.grow_mounted:
        with _mounted(node) as where:
            _GROW_MOUNTED[kind.family](str(where))
        return True
    if kind.family == "ext":
        _e2fsck(node)
        run(["resize2fs", node], timeout=3 * 3600)
    elif kind.family == "ntfs":
        run(["ntfsresize", "--force", "--no-progress-bar", node], timeout=3 * 3600, input_text="")
    else:
        raise ToolFailed(f"No tool here grows a {kind.name} filesystem.")
    return True


# the grow command of each kind that grows only while mounted, given its mount point
_GROW_MOUNTED = {
    "xfs": lambda where: run(["xfs_growfs", where], timeout=3600),
    "btrfs": lambda where: run(["btrfs", "filesystem", "resize", "max", where], timeout=3600),
}

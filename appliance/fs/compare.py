"""Comparing two filesystems by their files, both read-only: the check for a partition whose
filesystem was resized (a restore or clone onto another size), where bytes cannot match.

Each side is attached as a read-only loop device (a region of the disk, or the image's
copy-on-write view file) and mounted read-only without replaying a journal (ext: noload,
xfs: norecovery, btrfs: nologreplay, NTFS: ntfs-3g ro), so neither is written. The trees are
walked one after the other (two filesystems with one UUID are never mounted at once) and
compared by names, types, sizes, permission bits, link targets and content hashes.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import blake3

from appliance.errors import ApplianceError, Cancelled, DeviceError, ToolFailed
from appliance.fs.kinds import COMPARABLE, KINDS
from appliance.tools import run

SAFE = "nodev,nosuid,noexec"
BLOCK = 1 << 20


@dataclass(frozen=True)
class Entry:
    kind: str  # file, dir, symlink, fifo, socket, chardev, blockdev
    mode: int  # permission bits
    size: int | None  # files and symlinks
    content: str | None  # blake3 of a file, target of a symlink, major:minor of a device


@dataclass
class TreeDiff:
    files: int  # entries compared
    nbytes: int  # file bytes hashed on one side
    differences: list[str]  # "path: what differs", sorted, at most LIMIT

    @property
    def same(self) -> bool:
        return not self.differences


LIMIT = 20


def can_compare(fstype: str | None) -> bool:
    return fstype in COMPARABLE


def why_not(fstype: str | None) -> str:
    if fstype in ("vfat", "exfat"):
        return f"a {fstype} filesystem cannot be mounted on this system to compare its files"
    return f"{fstype or 'unformatted'} content cannot be compared by files"


@contextlib.contextmanager
def read_only_loop(path: str, offset: int = 0, size: int | None = None) -> Iterator[str]:
    """A read-only loop device over `path` (a disk region or a file); detached afterwards."""
    args = ["losetup", "--find", "--show", "--read-only", "--offset", str(offset)]
    if size is not None:
        args += ["--sizelimit", str(size)]
    node = run([*args, path], timeout=60).stdout.strip()
    try:
        yield node
    finally:
        run(["losetup", "--detach", node], check=False, timeout=60)


@contextlib.contextmanager
def mounted_read_only(node: str, fstype: str) -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="appliance-compare-", dir="/run"))
    kind = KINDS[fstype]
    options = f"{kind.read_only},{SAFE}"
    try:
        if kind.fuse:
            run(["ntfs-3g", "-o", options, node, str(where)], timeout=120)
        else:
            driver = kind.driver or fstype  # ext2/ext3 through ext4's driver, which has noload
            run(["mount", "-t", driver, "-o", options, node, str(where)], timeout=120)
    except ApplianceError as exc:
        with contextlib.suppress(OSError):
            where.rmdir()
        raise ToolFailed(
            f"The {fstype} filesystem cannot be mounted read-only to compare "
            f"its files: {str(exc).split(': ', 1)[-1]}"
        ) from exc
    try:
        yield where
    finally:
        run(["umount", str(where)], check=False, timeout=300)
        with contextlib.suppress(OSError):
            where.rmdir()


def _hash(path: str, added: Callable[[int], None], cancel: threading.Event | None) -> str:
    digest = blake3.blake3()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            if cancel is not None and cancel.is_set():
                raise Cancelled("Stopped by the user.")
            digest.update(block)
            added(len(block))
    return digest.hexdigest()


def walk(
    root: Path, added: Callable[[int], None] = lambda n: None, cancel: threading.Event | None = None
) -> dict[str, Entry]:
    """Relative path -> Entry for every name below `root` (the root itself excluded)."""
    out: dict[str, Entry] = {}

    def fail(err: OSError) -> None:
        raise DeviceError(f"A file cannot be read while comparing: {err.filename}: {err.strerror}.")

    for dirpath, dirnames, filenames in os.walk(root, onerror=fail):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            try:
                st = os.lstat(full)
                mode, kind = stat.S_IMODE(st.st_mode), stat.S_IFMT(st.st_mode)
                if kind == stat.S_IFREG:
                    out[rel] = Entry("file", mode, st.st_size, _hash(full, added, cancel))
                elif kind == stat.S_IFLNK:
                    target = os.readlink(full)
                    out[rel] = Entry("symlink", mode, len(os.fsencode(target)), target)
                elif kind in (stat.S_IFCHR, stat.S_IFBLK):
                    out[rel] = Entry(
                        "chardev" if kind == stat.S_IFCHR else "blockdev",
                        mode,
                        None,
                        f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}",
                    )
                else:
                    names = {stat.S_IFDIR: "dir", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}
                    out[rel] = Entry(names.get(kind, "other"), mode, None, None)
            except OSError as err:
                fail(err)
    return out


def diff_trees(a: dict[str, Entry], b: dict[str, Entry]) -> list[str]:
    """What differs between tree `a` (the image) and tree `b` (the disk), path by path."""
    out: list[str] = []
    for path in sorted(a.keys() | b.keys()):
        left, right = a.get(path), b.get(path)
        if left == right:
            continue
        if right is None:
            out.append(f"{path}: missing on the disk")
        elif left is None:
            out.append(f"{path}: only on the disk")
        elif left.kind != right.kind:
            out.append(f"{path}: a {left.kind} in the image, a {right.kind} on the disk")
        elif left.size != right.size:
            out.append(f"{path}: {left.size} bytes in the image, {right.size} on the disk")
        elif left.mode != right.mode:
            out.append(
                f"{path}: permissions {left.mode:o} in the image, {right.mode:o} on the disk"
            )
        else:
            what = "link target" if left.kind == "symlink" else "content"
            out.append(f"{path}: its {what} differs")
    return out


def compare_trees(
    image_side: Callable[[], contextlib.AbstractContextManager[Path]],
    disk_side: Callable[[], contextlib.AbstractContextManager[Path]],
    added: Callable[[int], None] = lambda n: None,
    cancel: threading.Event | None = None,
) -> TreeDiff:
    """Mount each side in turn (never both at once), walk it, then compare the trees."""
    hashed = [0]

    def count(n: int) -> None:
        hashed[0] += n
        added(n)

    with image_side() as root:
        theirs = walk(root, count, cancel)
    image_bytes = hashed[0]
    with disk_side() as root:
        ours = walk(root, added, cancel)
    differences = diff_trees(theirs, ours)
    return TreeDiff(len(theirs.keys() | ours.keys()), image_bytes, differences[:LIMIT])

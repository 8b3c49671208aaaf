"""Filesystems full of files to copy out: a whole-device filesystem on a loop device, a tree
of files written into it (Unicode names, nested folders, fixed dates), and the read-only mount
that stands for an image's partition as the FUSE view presents it.

Nothing here imports the appliance package.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kit.diskbuild import LoopAttacher, sparse_file
from kit.diskcompare import mounted, run

MiB = 1024 * 1024
MTIME_NS = 1_600_000_000_000_000_000  # 2020-09-13, whole seconds (NTFS keeps 100 ns)

MKFS = {
    "ext4": ("mkfs.ext4", "-q", "-F"),
    "ntfs": ("mkfs.ntfs", "-Q", "-F", "-q"),
    "xfs": ("mkfs.xfs", "-q", "-f"),
}


def files_of(seed: int) -> dict[str, bytes]:
    """Relative path -> content: a documents folder with small and multi-MiB files."""
    rng = random.Random(seed)
    return {
        "Documents/letter.txt": b"Dear reader,\n" * 40,
        "Documents/Résumé été.odt": rng.randbytes(70_000),
        "Documents/photos/ünïcødé-日本.jpg": rng.randbytes(3 * MiB + 123),
        "Documents/photos/big.raw": rng.randbytes(9 * MiB),
        "Documents/empty.txt": b"",
        "Other/not-chosen.txt": b"stays in the image",
    }


def make_filesystem(loops: LoopAttacher, directory: Path, name: str, fstype: str, size: int) -> str:
    """A loop device over a new sparse file, holding a new `fstype` filesystem."""
    node = loops.attach(sparse_file(directory, name, size))
    run(*MKFS[fstype], node)
    return node


def fill(loops: LoopAttacher, node: str, fstype: str, files: dict[str, bytes]) -> None:
    """Write `files` into the filesystem on `node`, every file and folder dated MTIME_NS."""
    mountpoint = Path(getattr(loops, "mount_root", "/tmp")) / f"fill-{Path(node).name}"
    with mounted(node, fstype, readonly=False, mountpoint=mountpoint) as root:
        for rel, data in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        for rel in files:
            os.utime(root / rel, ns=(MTIME_NS, MTIME_NS))
        for folder in sorted({p for rel in files for p in Path(rel).parents if str(p) != "."}):
            os.utime(root / folder, ns=(MTIME_NS, MTIME_NS))


@contextmanager
def readonly_partition(
    loops: LoopAttacher, image: Path, fstype: str, mountpoint: Path
) -> Iterator[Path]:
    """The filesystem in the file `image` through a read-only loop device, mounted
    read-only: what an image's partition looks like to the copy-out."""
    node = loops.attach(image, read_only=True)
    with mounted(node, fstype, readonly=True, mountpoint=mountpoint) as root:
        yield root


def digests(root: Path) -> dict[str, tuple[str, int]]:
    """Relative path -> (sha256, mtime in whole seconds) of every regular file below root."""
    out: dict[str, tuple[str, int]] = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            st = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path.relative_to(root))] = (digest, st.st_mtime_ns // 10**9)
    return out

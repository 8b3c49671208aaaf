"""A disk for browsing tests (`appliance mount`, `files`, `extract`): real filesystems with
what makes reading files hard, on a GPT disk (700 MiB) attached through ``loops``:

- p1 ext4 "many": 2,000 small files in 40 folders, plus a few larger ones;
- p2 NTFS "UNICODE": names in several scripts and with spaces;
- p3 btrfs "SUBVOL": a subvolume "@home" and files written with zstd compression;
- p4 exFAT "EXF": nested folders, a mixed-case long name (through exfat-fuse, read-write).

Files are a pure function of ``seed``. ``source_tree`` lists a partition's files by an
independent route (kit.diskcompare's read-only mounts; exFAT through exfat-fuse -o ro).
Nothing here imports the appliance package.
"""

from __future__ import annotations

import random
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kit.diskbuild import LINUX_FS_TYPE, MS_BASIC_DATA_TYPE, LoopAttacher, sparse_file
from kit.diskcompare import (
    Entry,
    file_tree,
    flush,
    flush_all,
    mounted,
    partition_nodes,
    run,
    syncfs,
    walk_tree,
)

MiB = 1 << 20
BROWSE_DISK_SIZE = 700 * MiB
UNICODE_NAMES = (
    "Документы/отчёт 2026.txt",
    "日本語のフォルダ/メモ.txt",
    "Ελληνικά/αρχείο.bin",
    "emoji 🎉 party/invitation ✉.txt",
    "Café déjà vu/Ünïcödé naïve.txt",
)


def many_files(seed: int) -> dict[str, bytes]:
    rng = random.Random(f"{seed}:many")
    files = {
        f"dir{d:02d}/file{f:03d}.txt": f"{seed} {d} {f} ".encode() * rng.randint(1, 200)
        for d in range(40)
        for f in range(50)
    }
    files["big/random.bin"] = rng.randbytes(6 * MiB + 11)
    files["big/text.log"] = b"line of a log file\n" * 100_000
    return files


def unicode_files(seed: int) -> dict[str, bytes]:
    rng = random.Random(f"{seed}:unicode")
    return {name: rng.randbytes(rng.randint(1, 300_000)) for name in UNICODE_NAMES}


def btrfs_files(seed: int) -> dict[str, bytes]:
    rng = random.Random(f"{seed}:btrfs")
    return {
        "@home/alice/notes.txt": b"compressible text\n" * 50_000,
        "@home/alice/photo.raw": rng.randbytes(3 * MiB),
        "top/readme.txt": b"top level of the filesystem\n" * 1000,
    }


def exfat_files(seed: int) -> dict[str, bytes]:
    rng = random.Random(f"{seed}:exfat")
    return {
        "Photos/2026/Holiday Picture Number One.JPG": rng.randbytes(900_000),
        "Documents/Letter.txt": b"Dear reader\n" * 300,
        "top.bin": rng.randbytes(4 * MiB + 3),
    }


def _write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@contextmanager
def _exfat_mounted(part: str, *, readonly: bool) -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="kit-exfat-"))
    run("mount.exfat-fuse", *(["-o", "ro"] if readonly else []), part, str(where))
    try:
        yield where
    finally:
        if not readonly:
            syncfs(where)
        for _ in range(50):
            if subprocess.run(["umount", str(where)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        where.rmdir()


def build_browse_disk(loops: LoopAttacher, path: Path, *, seed: int = 0) -> str:
    """The disk above; returns its loop node."""
    if not path.exists():
        sparse_file(path.parent, path.name, BROWSE_DISK_SIZE)
    node = loops.attach(path)
    script = (
        "label: gpt\n"
        f"start=2048, size=200MiB, type={LINUX_FS_TYPE}, name=many\n"
        f"size=150MiB, type={MS_BASIC_DATA_TYPE}, name=unicode\n"
        f"size=200MiB, type={LINUX_FS_TYPE}, name=subvol\n"
        f"size=64MiB, type={MS_BASIC_DATA_TYPE}, name=exfat\n"
    )
    run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", node, input=script)
    parts = partition_nodes(node)

    run("mkfs.ext4", "-q", "-F", "-L", "many", parts[1])
    with mounted(parts[1], "ext4", readonly=False) as root:
        _write(root, many_files(seed))

    run("mkfs.ntfs", "-Q", "-F", "-L", "UNICODE", parts[2])
    with mounted(parts[2], "ntfs", readonly=False) as root:
        _write(root, unicode_files(seed))

    run("mkfs.btrfs", "-q", "-f", "-L", "SUBVOL", parts[3])
    where = Path(tempfile.mkdtemp(prefix="kit-btrfs-"))
    try:
        run("mount", "-t", "btrfs", "-o", "compress=zstd", parts[3], str(where))
        try:
            run("btrfs", "subvolume", "create", str(where / "@home"))
            _write(where, btrfs_files(seed))
            syncfs(where)
        finally:
            run("umount", str(where))
    finally:
        where.rmdir()

    run("mkfs.exfat", "-L", "EXF", parts[4])
    with _exfat_mounted(parts[4], readonly=False) as root:
        _write(root, exfat_files(seed))
    flush(parts[4])
    flush_all(node)
    return node


def source_tree(part: str, fstype: str) -> dict[str, Entry]:
    """The files of a source partition, read by a route of the kit's own."""
    if fstype == "exfat":
        with _exfat_mounted(part, readonly=True) as root:
            return walk_tree(root, with_mode=False)
    return file_tree(part, fstype)

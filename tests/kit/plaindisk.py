"""A small GPT disk whose free space reads as zeros, and helpers for the disk files made of it.

``build_plain_disk`` is for tests that compare a whole disk file with its source byte for
byte (export to .img or a VM disk, save --to): every byte the filesystems do not use is zero,
because nothing was ever deleted on it (kit.diskbuild's disks keep stale bytes in free space
on purpose, which a file of the used data does not hold). p1 FAT32 ESP (mtools), p2 ext4
with files, p3 swap; a boot code and a gap marker outside the partitions.

Nothing here imports the appliance package.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from kit.diskbuild import (
    ESP_TYPE,
    LINUX_FS_TYPE,
    LINUX_SWAP_TYPE,
    LoopAttacher,
    MiB,
    payload,
    sparse_file,
    write_boot_code,
    write_gap_marker,
)
from kit.diskcompare import (
    MTOOLS_ENV,
    device_size,
    flush_all,
    mounted,
    partition_nodes,
    run,
    syncfs,
)

PLAIN_DISK_SIZE = 160 * MiB
SWAP_UUID = "5a1e5a1e-0000-4000-8000-00000000000a"


def build_plain_disk(loops: LoopAttacher, path: Path) -> str:
    """Build the disk in a new sparse file at ``path``; return its loop node."""
    sparse_file(path.parent, path.name, PLAIN_DISK_SIZE)
    node = loops.attach(path)
    script = (
        "label: gpt\n"
        "label-id: 6d0b2b0c-3c3e-4a51-9d57-0a5e1e0b0001\n"
        f"start=2048, size=64MiB, type={ESP_TYPE}, name=ESP\n"
        f"size=80MiB, type={LINUX_FS_TYPE}, name=root\n"
        f"size=8MiB, type={LINUX_SWAP_TYPE}, name=swap\n"
    )
    run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", node, input=script)
    parts = partition_nodes(node)
    run("mkfs.fat", "-F", "32", "-n", "ESP", "-i", "1234ABCD", parts[1])
    esp = Path(path.parent / "esp-files")
    esp.mkdir()
    (esp / "BOOTX64.EFI").write_bytes(payload(3, "esp").keep["data/random-1.bin"])
    run("mcopy", "-i", parts[1], str(esp / "BOOTX64.EFI"), "::/", env=MTOOLS_ENV)
    run(
        "mkfs.ext4", "-q", "-F", "-L", "root",
        "-E", "lazy_itable_init=0,lazy_journal_init=0", parts[2],
    )  # fmt: skip
    mountpoint = loops.mountpoint("plain-root") if hasattr(loops, "mountpoint") else None
    with mounted(parts[2], "ext4", readonly=False, mountpoint=mountpoint) as root:
        for rel, data in payload(3, "root").keep.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        syncfs(root)
    run("mkswap", "-L", "SWAP", "-U", SWAP_UUID, parts[3])
    write_gap_marker(node, 3)
    write_boot_code(node, 3)
    flush_all(node)
    return node


def sha256_of(path: str | os.PathLike[str], length: int | None = None) -> str:
    """sha256 of the first ``length`` bytes (all of them by default) of a file or disk."""
    digest = hashlib.sha256()
    left = length
    with open(path, "rb") as handle:
        while left is None or left > 0:
            block = handle.read(8 * MiB if left is None else min(8 * MiB, left))
            if not block:
                break
            digest.update(block)
            if left is not None:
                left -= len(block)
    return digest.hexdigest()


def qemu_compare(
    raw: str | os.PathLike[str], vm_file: Path, fmt: str
) -> subprocess.CompletedProcess[str]:
    """``qemu-img compare`` of a raw disk and a VM disk: same size, same bytes (where one of
    them is not allocated it reads as zeros)."""
    info = json.loads(run("qemu-img", "info", "--output=json", "-f", fmt, str(vm_file)).stdout)
    size = os.stat(raw).st_size if Path(raw).is_file() else device_size(os.fspath(raw))
    assert info["virtual-size"] == size, (info["virtual-size"], size)
    argv = ["-f", "raw", "-F", fmt, os.fspath(raw), str(vm_file)]
    return run("qemu-img", "compare", *argv, check=False)


def allocated_bytes(path: Path) -> int:
    """The bytes a (sparse) file takes on its filesystem."""
    return os.stat(path).st_blocks * 512

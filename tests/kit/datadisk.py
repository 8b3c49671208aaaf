"""A disk that holds a given amount of data, for tests and bench rows that need a restore to
last long enough to be stopped or measured: GPT, one ext4 partition, random (incompressible)
files that fill `data` bytes, so every 4 MiB window is a stored chunk of its own.

Nothing here imports the appliance package.
"""

from __future__ import annotations

import os
from pathlib import Path

from kit.diskbuild import LINUX_FS_TYPE, LoopAttacher, MiB, sparse_file
from kit.diskcompare import flush_all, mounted, partition_nodes, run, syncfs

FILE_SIZE = 64 * MiB


def data_disk_size(data: int) -> int:
    """The disk's size for `data` bytes of files: the data, ext4's own share, some room."""
    return (data * 9 // 8 + 64 * MiB) // MiB * MiB


def build_data_disk(
    loops: LoopAttacher, path: Path, data: int, *, mountpoint: Path | None = None
) -> str:
    """A new sparse disk file at `path` holding `data` bytes of random files; its loop
    node."""
    sparse_file(path.parent, path.name, data_disk_size(data))
    node = loops.attach(path)
    script = f"label: gpt\nstart=2048, type={LINUX_FS_TYPE}, name=data\n"
    run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", node, input=script)
    part = partition_nodes(node)[1]
    run(
        "mkfs.ext4", "-q", "-F", "-L", "data",
        "-E", "lazy_itable_init=0,lazy_journal_init=0", part,
    )  # fmt: skip
    with mounted(part, "ext4", readonly=False, mountpoint=mountpoint) as root:
        left, number = data, 0
        while left > 0:
            size = min(FILE_SIZE, left)
            with open(root / f"data-{number:03}.bin", "wb") as handle:
                for _ in range(0, size, 4 * MiB):
                    handle.write(os.urandom(min(4 * MiB, size)))
                handle.truncate(size)
            left -= size
            number += 1
        syncfs(root)
    flush_all(node)
    return node

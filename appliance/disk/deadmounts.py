"""FUSE mounts whose server process is gone (a job killed with its whole process group: the
views' own watchers died with it). Such a mount answers every access with ENOTCONN and stays
until someone unmounts it; the next job that makes a view of the same kind clears them.

Only a dead mount is touched: a live view of another job answers, and is left alone.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path


def is_dead_mount(path: Path) -> bool:
    """Whether `path` is a FUSE mount point whose server is gone. Its attributes may still
    come from the kernel's cache, so a request that reaches the server is made: a listing
    of a folder, an open of a file."""
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def clear_dead(folders: list[Path], mount_name: str) -> int:
    """Unmount (lazily) the dead mount `mount_name` inside each folder and remove the folder;
    the number cleared."""
    cleared = 0
    for folder in folders:
        mountpoint = folder / mount_name
        if not is_dead_mount(mountpoint):
            continue
        subprocess.run(["umount", "--lazy", str(mountpoint)], capture_output=True, check=False)
        if is_dead_mount(mountpoint):
            continue  # still there: not ours to force
        shutil.rmtree(folder, ignore_errors=True)
        cleared += 1
    return cleared

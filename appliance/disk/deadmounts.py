"""FUSE mounts whose server process is gone (a job killed with its whole process group: the
views' own watchers died with it). Such a mount answers every access with ENOTCONN and stays
until someone unmounts it; the next job that makes a view of the same kind clears them.

Only a dead mount is touched: a live view of another job answers, and is left alone.

An image mount (`appliance mount`, jobs/imagemount.py) is several steps (a view, a loop
device, a filesystem mount); its record says which, so `appliance umount` and the next mount
undo what a killed process left, step by step.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any


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


# ------------------------------------------------------------------ image mounts

#: an image mount's record, in its folder (RUN_DIR/mounts/<id>/): what undoes it
RECORD = "state.json"


def process_start(pid: int) -> str | None:
    """The start time of process `pid` (field 22 of /proc/PID/stat), None when it is gone
    (or a zombie): a pid with another start time is another process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie is gone too


def alive(pid: int | None, start: str | None) -> bool:
    return bool(pid) and process_start(int(pid or 0)) == start


def write_record(folder: Path, record: dict[str, Any]) -> None:
    """Replace the record in `folder` at once (a reader never sees half of it)."""
    tmp = folder / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, folder / RECORD)


def read_record(folder: Path) -> dict[str, Any] | None:
    try:
        found = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def records(mounts: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Each image mount's folder and record under `mounts`."""
    found = []
    for folder in sorted(mounts.glob("*")):
        record = read_record(folder)
        if record is not None:
            found.append((folder, record))
    return found


def _mounted(where: str) -> bool:
    target = where.encode().replace(b" ", b"\\040")
    with contextlib.suppress(OSError), open("/proc/self/mounts", "rb") as table:
        return any(line.split(b" ")[1:2] == [target] for line in table)
    return False


def _umount(where: str | None) -> None:
    if not where or not _mounted(where):
        return
    if subprocess.run(["umount", where], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "--lazy", where], capture_output=True, check=False)


def undo_mount(folder: Path, record: dict[str, Any]) -> None:
    """Every step of an image mount undone, in reverse: the filesystem unmounted (its loop
    device is autoclear: the kernel detaches it then), the view unmounted and its process
    stopped, the folder removed. Each step checks first, so this finishes what a killed
    process left half done."""
    _umount(record.get("dir"))
    _umount(record.get("view"))
    view_pid = record.get("view_pid")
    if view_pid and alive(view_pid, record.get("view_start")):
        with contextlib.suppress(OSError):
            os.kill(int(view_pid), signal.SIGTERM)
    remove_folder(folder)


def remove_folder(folder: Path) -> None:
    """An image mount's folder and its files; never below a mount (unlink and rmdir only)."""
    for name in (RECORD, f".{RECORD}.tmp", "view.log", "keeper.log"):
        with contextlib.suppress(OSError):
            (folder / name).unlink()
    for path in (folder / "view", folder / "root", folder):
        if not _mounted(str(path)):
            with contextlib.suppress(OSError):
                path.rmdir()


def clear_dead_image_mounts(mounts: Path) -> int:
    """Undo the image mounts whose owning process is gone (killed): their files read only
    I/O errors now. The number cleared; a live mount of another process is left alone."""
    cleared = 0
    for folder, record in records(mounts):
        if alive(record.get("pid"), record.get("start")):
            continue
        undo_mount(folder, record)
        cleared += 1
    return cleared

"""Where copied-out files may go, and the names they get there.

A destination is refused, in one sentence and before anything is written, when it is inside
the mounted image (read-only anyway, and a copy into itself), on a filesystem mounted
read-only (the repository's read-only mount, the image's own), on the filesystem that holds
the image (the repository folder or the image file: the copy would change what is read), in
memory (tmpfs: lost at power off) unless allowed, or too small for what was chosen.

Names are never overwritten: a taken name gets the first free numbered sibling,
"notes.txt" -> "notes (2).txt", "Documents" -> "Documents (2)".
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

from appliance.disk.usage import RAM_FILESYSTEMS, filesystem_type, nearest_existing
from appliance.errors import DeviceError, SafetyRefusal, UsageError
from appliance.units import human_size


def sibling(name: str, number: int) -> str:
    """The `number`th name for `name`: "notes (2).txt" (a leading dot is not a suffix)."""
    if number < 2:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        return f"{name} ({number})"
    return f"{stem} ({number}).{suffix}"


def numbered(into: Path, name: str) -> Path:
    """`into/name`, or its first numbered sibling that does not exist (as anything)."""
    number = 1
    while os.path.lexists(into / sibling(name, number)):
        number += 1
    return into / sibling(name, number)


def reserve(into: Path, name: str, *, directory: bool) -> Path:
    """Make `into/name` (an empty folder or file) or the first free numbered sibling, so that
    nothing that exists is ever written over; OSError when nothing can be made."""
    number = 1
    while True:
        path = into / sibling(name, number)
        try:
            if directory:
                path.mkdir(mode=0o700)
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            return path
        except FileExistsError:
            number += 1
        except OSError as exc:
            # a case-insensitive filesystem (FAT) may say EEXIST through another name
            if exc.errno != errno.EEXIST:
                raise
            number += 1


def check_destination(
    dest: Path,
    *,
    tree: Path,
    sources: Sequence[Path] = (),
    need: int = 0,
    allow_ram: bool = False,
) -> Path:
    """The folder `dest` (made when missing), once every rule above allows it; `tree` is
    where the image's partition is mounted, `sources` what the image is read from."""
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} is a file, not a folder: give a folder to copy into.")
    where = nearest_existing(dest.absolute())
    real = Path(os.path.realpath(where))
    real_tree = Path(os.path.realpath(tree))
    if real == real_tree or real_tree in real.parents:
        raise SafetyRefusal(
            f"{dest} is inside the image's partition (mounted read-only at {tree}); "
            "choose a folder on another disk."
        )
    vfs = os.statvfs(where)
    if vfs.f_flag & os.ST_RDONLY:
        raise SafetyRefusal(
            f"{dest} is on a filesystem mounted read-only (the repository's, or the image's "
            "own); choose a folder on another disk."
        )
    device = os.stat(where).st_dev
    for source in sources:
        try:
            same = os.stat(nearest_existing(source.absolute())).st_dev == device
        except OSError:
            continue
        if same:
            raise SafetyRefusal(
                f"{dest} is on the filesystem that holds the image ({source}); "
                "choose a folder on another disk."
            )
    fstype = filesystem_type(where)
    if fstype in RAM_FILESYSTEMS and not allow_ram:
        raise SafetyRefusal(
            f"{dest} is in memory ({fstype}) and lost at power off; choose a folder on "
            "a disk, or add --allow-ram."
        )
    free = vfs.f_bavail * vfs.f_frsize
    if need > free:
        raise DeviceError(
            f"{dest} has {human_size(free)} free and the chosen files hold {human_size(need)}: "
            "nothing was copied; choose fewer files or a larger disk."
        )
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeviceError(f"The folder {dest} cannot be made ({exc.strerror}).") from exc
    return dest

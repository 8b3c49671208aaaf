"""A disk file as the destination of a job (`export`, `save --to`): the checks made before a
byte is written, and the rule that the file is complete only under its final name.

Refused, each with one sentence (exit 2 for a wrong name or folder, 5 otherwise): a name of
no known kind, a folder that does not exist, a file that exists (unless `force`), something
that is not a regular file (a disk, a folder), a folder in memory (tmpfs: lost at power off)
unless `allow_ram`, and a folder whose free space is clearly too small.

The job writes NAME.part and renames it to NAME only once it is durably written; a job that
fails or is stopped removes its NAME.part, so a half-written file is never found under NAME.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from appliance.disk.usage import RAM_FILESYSTEMS, filesystem_type
from appliance.errors import DeviceError, SafetyRefusal, UsageError
from appliance.io.rawfile import describe_kind, file_kind
from appliance.plan.preflight import free_space
from appliance.units import human_size

#: a VM disk's own tables and headers, beyond the data it holds (qcow2 L2 tables: 0.2 %)
VM_OVERHEAD = 0.01
SLACK = 16 * 1024 * 1024


@dataclass(frozen=True)
class FileDestination:
    path: Path
    kind: str  # rawfile.file_kind's: "img", "zst", "qcow2", "vhdx", ...
    needed: int  # bytes the file will likely take

    @property
    def part(self) -> Path:
        """Where the file is written until it is complete."""
        return self.path.with_name(self.path.name + ".part")

    @property
    def what(self) -> str:
        return describe_kind(self.kind)


def destination(
    path: Path,
    data_bytes: int,
    *,
    force: bool = False,
    allow_ram: bool = False,
    ratio: float = 0.6,
) -> FileDestination:
    """Check that `path` may be written with a disk holding `data_bytes` bytes of data
    (`ratio`: the share a zstd stream of them takes)."""
    kind = file_kind(path)
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"The folder {folder} does not exist; make it first.")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        raise SafetyRefusal(f"{path} is not a plain file; give the name of a file to write.")
    if mode is not None and not force:
        raise SafetyRefusal(f"The file {path} exists; add --force to replace it.")
    fstype = filesystem_type(folder)
    if fstype in RAM_FILESYSTEMS and not allow_ram:
        raise SafetyRefusal(
            f"The folder {folder} is in memory ({fstype}), and {path.name} would be lost "
            "at power off; choose a folder on a disk, or add --allow-ram."
        )
    if kind == "zst":
        needed = int(data_bytes * ratio)
    elif kind == "img":
        needed = data_bytes
    else:
        needed = int(data_bytes * (1 + VM_OVERHEAD))
    free = free_space(folder)
    if free is not None:
        if mode is not None:  # --force: the old file's blocks are freed first
            free += os.stat(path).st_blocks * 512
        if needed + SLACK > free:
            raise SafetyRefusal(
                f"{path.name} needs about {human_size(needed + SLACK)} and {folder} has "
                f"{human_size(free)} free; free some space or choose another folder."
            )
    return FileDestination(path, kind, needed)


@contextlib.contextmanager
def written_as(dest: FileDestination) -> Iterator[Path]:
    """Yield the .part path to write; on success rename it to the final name (replacing an
    old file), durably; on any failure remove it."""
    part = dest.part
    part.unlink(missing_ok=True)
    try:
        yield part
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise DeviceError(f"{dest.path} could not be written: {exc.strerror or exc}.") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest.path)
    fd = os.open(dest.path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Get files back: copy chosen files and folders of one partition of an image into a folder
of another disk, without the user mounting anything (`appliance extract`, the TUI's Browse).

The partition is mounted read-only by appliance.jobs.imagemount for as long as the copy runs
the destination is checked by
appliance.jobs.copydest and the copy made by appliance.jobs.copyout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ImageError, UsageError
from appliance.jobs import imagemount
from appliance.jobs.copydest import check_destination
from appliance.jobs.copyout import CopyOut, CopyReport, Reader, open_unbuffered, selected_bytes
from appliance.progress import Progress
from appliance.repo.repository import local_folder


@dataclass(frozen=True)
class ImageWhere:
    """Which image: an image of a repository (`repo`, `image`), or a disk file (`file`)."""

    repo: str | None = None
    image: str | None = None
    file: str | None = None

    def describe(self) -> str:
        if self.file:
            return f"the disk file {self.file}"
        return f"image {self.image}"

    def sources(self) -> list[Path]:
        """What the image is read from, on this machine: nothing may be copied onto it."""
        if self.file:
            return [Path(self.file)]
        folder = local_folder(self.repo) if self.repo else None
        return [folder] if folder is not None else []


def where_of(repo: str, image: str) -> ImageWhere:
    """An image as the image list names it: ours or another tool's, or a disk file that lies
    in the repository's folder (listed by its file name)."""
    path = Path(repo) / image
    if "/" not in image and path.is_file() and not (Path(repo) / "images" / image).exists():
        return ImageWhere(file=str(path))
    return ImageWhere(repo, image)


Choice = imagemount.PartitionChoice


Opener = Callable[[ImageWhere, int, threading.Event], AbstractContextManager[Path]]


def partitions(where: ImageWhere) -> list[Choice]:
    return imagemount.partitions_of(imagemount.ImageRef(where.repo, where.image, where.file))


@contextmanager
def mounted(where: ImageWhere, number: int, stop: threading.Event) -> Iterator[Path]:
    """The partition `number` of the image, mounted read-only, for as long as the block runs."""
    ref = imagemount.ImageRef(where.repo, where.image, where.file)
    with imagemount.mounted_partition(ref, number, stop) as root:
        yield Path(root)


def check_where(where: ImageWhere) -> None:
    if (where.file is None) == (where.repo is None or where.image is None):
        raise UsageError("Name the image with --repo DIR --image NAME, or a disk file with --file.")


def copy_files(
    root: Path,
    names: Sequence[str],
    dest: Path,
    *,
    sources: Sequence[Path] = (),
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    allow_ram: bool = False,
    reader: Reader = open_unbuffered,
) -> CopyReport:
    """Copy `names` of the mounted tree `root` into `dest`, once every rule of copydest
    allows it (the chosen files' sizes against the free space first)."""
    if not names:
        raise UsageError("Choose at least one file or folder to copy.")
    need = selected_bytes(root, names)
    check_destination(dest, tree=root, sources=sources, need=need, allow_ram=allow_ram)
    job = CopyOut(root, dest, progress=progress, cancel=cancel, reader=reader)
    return job.run(names)


def extract(
    where: ImageWhere,
    number: int,
    names: Sequence[str],
    dest: Path,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    allow_ram: bool = False,
    opener: Opener | None = None,
) -> CopyReport:
    """Mount partition `number` of the image read-only (with `opener`, or `mounted`), copy
    `names` out, unmount."""
    check_where(where)
    stop = cancel or threading.Event()
    try:
        with (opener or mounted)(where, number, stop) as root:
            return copy_files(
                root,
                names,
                dest,
                sources=where.sources(),
                progress=progress,
                cancel=stop,
                allow_ram=allow_ram,
            )
    except FileNotFoundError as exc:  # the mount went away under the copy
        raise ImageError(
            f"Partition {number} of {where.describe()} went away during the copy ({exc})."
        ) from exc

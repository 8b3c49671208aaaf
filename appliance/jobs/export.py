"""export: one image of our repository written out as a disk file, for people who want a file
they can `dd`, or a VM that boots the saved machine.

    appliance export --repo REPO --image NAME FILE   (FILE: .img .img.zst .qcow2 .vhdx .vmdk ...)

Plan first (the image complete and whole, the destination checked: its kind, its folder, its
room, not an existing file unless `force`), then write: every stored window is read, decoded
and hash-checked as a restore does, and written at its place in the disk (io.rawfile). Swap
is not stored in an image; its partition gets a fresh swap header with its UUID and label, as
a restore makes it, so the exported machine finds its swap.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.io.rawfile import WithBytes, file_kind, write_file
from appliance.io.source import RepositorySource
from appliance.jobs.filedest import FileDestination, destination, written_as
from appliance.progress import Phase, Progress
from appliance.repo.image import LoadedImage, load_image
from appliance.repo.manifest import Region
from appliance.repo.repository import Repository
from appliance.tools import run

SWAP_HEADER = 64 * 1024  # the swap header is one page: 4 KiB, up to 64 KiB pages


@dataclass(frozen=True)
class ExportPlan:
    image: LoadedImage
    source: RepositorySource
    dest: FileDestination
    size: int  # the disk's size: the raw file's
    data_bytes: int  # used bytes in stored windows: what is read and written

    def to_json(self) -> dict[str, object]:
        return {
            "command": "export",
            "image": self.image.manifest.name,
            "file": str(self.dest.path),
            "format": self.dest.kind,
            "disk_size": self.size,
            "bytes": self.data_bytes,
        }


def stored_bytes(source: RepositorySource) -> int:
    """Used bytes in the windows the image stores (all-zero windows are not stored)."""
    total = 0
    for number, region in enumerate(source.regions):
        for win in region.windows(number):
            if source.chunk(number, win.number) is not None:
                total += win.used_bytes
    return total


def plan_export(
    repo_path: str, image: str, file: str, *, force: bool = False, allow_ram: bool = False
) -> ExportPlan:
    file_kind(Path(file))  # a wrong name is said before the repository is read
    loaded = load_image(Repository.open(repo_path), image)
    source = RepositorySource.from_image(loaded)
    data = stored_bytes(source)
    dest = destination(Path(file).absolute(), data, force=force, allow_ram=allow_ram)
    return ExportPlan(loaded, source, dest, loaded.manifest.disk.size, data)


def swap_regions(plan: ExportPlan) -> list[Region]:
    return [r for r in plan.image.manifest.regions if r.method == "swap" and r.partition]


def swap_header(region: Region) -> bytes:
    """The first bytes of a swap partition as mkswap makes them (with its UUID and label),
    made on a sparse scratch file of the partition's size."""
    workdir = os.environ.get("APPLIANCE_TMP", "/var/tmp")
    with tempfile.TemporaryDirectory(prefix="appliance-swap-", dir=workdir) as folder:
        scratch = Path(folder) / "swap"
        with open(scratch, "wb") as handle:
            handle.truncate(region.size)
        args = ["mkswap", "--force"]
        if region.uuid:
            args += ["--uuid", region.uuid]
        if region.label:
            args += ["--label", region.label]
        run([*args, str(scratch)])
        with open(scratch, "rb") as handle:
            return handle.read(min(SWAP_HEADER, region.size))


def export(
    plan: ExportPlan,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    level: int = 3,
) -> float:
    """Write the file; the seconds it took."""
    progress = progress or Progress()
    started = time.monotonic()
    progress.total = plan.data_bytes
    progress.set_phase(
        Phase.EXPORT, f"writing image {plan.image.manifest.name} as {plan.dest.what}"
    )
    with written_as(plan.dest) as part:
        swaps = [(r.start, swap_header(r)) for r in swap_regions(plan)]
        write_file(
            WithBytes(plan.source, swaps) if swaps else plan.source,
            plan.size,
            part,
            plan.dest.kind,
            progress=progress,
            cancel=cancel,
            level=level,
        )
    progress.set_phase(Phase.DONE, f"{plan.dest.path} written")
    return time.monotonic() - started

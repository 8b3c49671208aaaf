"""save --to FILE: a whole disk saved straight to one plain file (for people who want a file
they can `dd`), not into a repository.

    appliance save SOURCE --to FILE.img        the raw disk, sparse
    appliance save SOURCE --to FILE.img.zst    the raw disk as one zstd stream

(a VM disk name, .qcow2 .vhdx ..., makes a VM disk of it). The file is the whole disk, byte for
byte where the disk holds data: the partition table and boot areas, and each filesystem's used
blocks as save reads them (its used-block map, O_DIRECT windows; a filesystem without a map
is read whole); the free space of a filesystem and unpartitioned space read as zeros. Swap
keeps its header (UUID and label), not its content.

The same refusals as save, before anything is written: a partition mounted read-write, the
file on the disk being saved, a folder in memory, too little room; the file is complete only
once renamed from FILE.part.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.disk.model import Disk
from appliance.disk.probe import probe_source
from appliance.disk.usage import disks_of_path, nearest_existing
from appliance.errors import SafetyRefusal
from appliance.io.rawfile import write_file
from appliance.io.source import DiskSource, SourceRegion
from appliance.jobs.filedest import FileDestination, destination, written_as
from appliance.jobs.save import RegionPlan, plan_regions
from appliance.plan.safety import check_source
from appliance.progress import Phase, Progress

SWAP_HEADER = 64 * 1024  # a swap partition's header page (4 KiB, up to 64 KiB pages)


@dataclass(frozen=True)
class SaveFileResult:
    disk: Disk
    dest: FileDestination
    data_bytes: int
    seconds: float
    unreadable: list[tuple[int, int]]  # byte ranges of the disk saved as zeros

    def to_json(self) -> dict[str, object]:
        return {
            "command": "save",
            "source": self.disk.node,
            "file": str(self.dest.path),
            "format": self.dest.kind,
            "disk_size": self.disk.size,
            "bytes": self.data_bytes,
            "seconds": round(self.seconds, 3),
            "read_errors": [list(r) for r in self.unreadable],
        }


def source_regions(plans: list[RegionPlan]) -> list[SourceRegion]:
    """The save's regions as a disk source reads them; swap keeps its header page."""
    out: list[SourceRegion] = []
    for plan in plans:
        used = plan.used
        if plan.region.method == "swap":
            used = [(0, min(SWAP_HEADER, plan.region.size))]
        out.append(SourceRegion.of(plan.region, used))
    return out


def save_file(
    source: str,
    file: str,
    *,
    force: bool = False,
    allow_ram: bool = False,
    level: int = 3,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
) -> SaveFileResult:
    progress = progress or Progress()
    started = time.monotonic()
    disk = probe_source(source)
    path = Path(file).absolute()
    if disk.name in disks_of_path(nearest_existing(path.parent)):
        raise SafetyRefusal(
            f"{path} would be on {disk.describe()}, the disk being saved; "
            "choose a folder on another disk."
        )
    check_source(disk)  # no partition mounted read-write
    plans = plan_regions(disk, progress)
    regions = source_regions(plans)
    data = sum(length for region in regions for _, length in region.used)
    dest = destination(path, data, force=force, allow_ram=allow_ram)
    progress.total = data
    progress.set_phase(Phase.SAVE, f"saving {disk.describe()} to {dest.what}")
    with DiskSource(disk.node, disk.logical_sector, regions) as reader, written_as(dest) as part:
        write_file(
            reader,
            disk.size,
            part,
            dest.kind,
            progress=progress,
            cancel=cancel,
            level=level,
            workers=workers,
        )
    progress.set_phase(Phase.DONE, f"{dest.path} written")
    return SaveFileResult(disk, dest, data, time.monotonic() - started, sorted(reader.bad))

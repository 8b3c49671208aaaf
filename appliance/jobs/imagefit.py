"""Which disks take an image file, and how: the plan of `appliance write`.

Every target is probed and passed through restore's guards (never the boot stick, a mounted
disk, one with active swap or holders; never the disk that holds the file itself), and each
is known to take the image before anything is written. A target smaller than the image
(sticks of one "size" differ) is taken only when what it cannot hold is zeros (found by
reading the file's tail, or the whole stream once when it is compressed), or lies past the
image's partitions: cut for an MBR image; for a GPT image, sgdisk rebuilds the GPT for the
smaller disk (backup header at its real end) and those sectors are written instead.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.disk.model import Disk
from appliance.disk.probe import probe_disk
from appliance.disk.usage import disks_of_path
from appliance.errors import ImageError, SafetyRefusal
from appliance.plan.safety import check_target
from appliance.progress import Phase, Progress
from appliance.shelf import imagefile
from appliance.shelf.imagefile import ImageFile
from appliance.tools import run
from appliance.units import human_size

MiB = 1024 * 1024
SECTOR = 512  # the sector size an image file's table is read with (sfdisk's, on a file)
GPT_TAIL = 33  # the backup entries (32 sectors) and header: what a GPT needs at the end


@dataclass
class TargetPlan:
    """One target: the disk, the image bytes it gets, and why fewer than all are fine."""

    disk: Disk
    length: int
    short: str | None = None  # why a target smaller than the image is accepted
    # sectors that differ from the image's (a GPT rebuilt for a smaller disk): offset -> bytes
    patch: dict[int, bytes] = field(default_factory=dict, repr=False)

    @property
    def span(self) -> int:
        """Bytes written on the disk: the image's bytes padded to a whole sector."""
        sector = self.disk.logical_sector
        return min(-(-self.length // sector) * sector, self.disk.size)


@dataclass
class WriteFilePlan:
    image: ImageFile
    size: int
    targets: list[TargetPlan]

    def lines(self) -> list[str]:
        lines = [f"Write {self.image.name} ({self.image.describe()}, {human_size(self.size)})"]
        for target in self.targets:
            lines.append(f"onto {target.disk.describe()}")
            if target.short:
                lines.append(f"  only its first {target.length} bytes: {target.short}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "command": "write",
            "file": str(self.image.path),
            "member": self.image.member,
            "kind": self.image.kind,
            "bytes": self.size,
            "targets": [
                {
                    "target": t.disk.node,
                    "target_size": t.disk.size,
                    "bytes": t.length,
                    "gpt_rebuilt": bool(t.patch),
                }
                for t in self.targets
            ],
        }


def plan_write(path: str, targets: list[str], *, progress: Progress | None = None) -> WriteFilePlan:
    """The file and every target checked: nothing is written by a plan."""
    progress = progress or Progress()
    image = imagefile.probe(path)
    disks: list[Disk] = []
    for name in targets:
        disk = probe_disk(name)
        if any(d.devnum == disk.devnum for d in disks):
            raise SafetyRefusal(f"The target {disk.node} is named twice; name each disk once.")
        check_target(disk)
        if disk.name in disks_of_path(image.path):
            raise SafetyRefusal(
                f"The target {disk.describe()} holds the image file {image.path}; "
                "choose another disk."
            )
        disks.append(disk)
    size = image.size
    smallest = min(d.size for d in disks)
    scan = None
    if size is None or smallest < size:
        progress.set_phase(Phase.CHECK, f"reading {image.name} once to learn its size")
        scan = imagefile.scan(image, tick=progress.add, limit=smallest)
        size = scan.size
    if size == 0:
        raise ImageError(f"The image file {image.name} is empty.")
    other = [d for d in disks if d.logical_sector != SECTOR]
    if other:
        table, _ = imagefile.partitions_end(image, size)
        if table is not None:
            raise SafetyRefusal(
                f"The target {other[0].describe()} has {other[0].logical_sector}-byte sectors "
                f"and the {table.upper()} table of {image.name} counts {SECTOR}-byte sectors; "
                f"use a disk with {SECTOR}-byte sectors."
            )
    plans = [_fit(image, size, disk, scan) for disk in disks]
    return WriteFilePlan(image, size, plans)


def _fit(image: ImageFile, size: int, disk: Disk, scan: imagefile.Scan | None) -> TargetPlan:
    if disk.size >= size:
        return TargetPlan(disk, size)
    assert scan is not None
    missing = size - disk.size
    if scan.data_end <= disk.size:
        return TargetPlan(disk, disk.size, f"the last {missing} bytes of the image are zeros")
    table, end = imagefile.partitions_end(image, size)
    if table == "dos" and end is not None and end <= disk.size:
        return TargetPlan(
            disk, disk.size, f"the image's partitions end at byte {end}; what follows is cut"
        )
    room = disk.size - GPT_TAIL * SECTOR
    if table == "gpt" and end is not None and end <= room and disk.logical_sector == SECTOR:
        patch = relocated_gpt(imagefile.read_head(image), disk.size)
        return TargetPlan(
            disk,
            disk.size,
            f"the image's partitions end at byte {end}; its GPT is rebuilt for the disk's size",
            patch,
        )
    where = f"; its partitions end at byte {end}" if end is not None else ""
    raise SafetyRefusal(
        f"The target {disk.describe()} is too small for {image.name}: the image needs "
        f"{human_size(size)} ({size} bytes) and its data runs to byte {scan.data_end}"
        f"{where}."
    )


def relocated_gpt(head: bytes, size: int) -> dict[int, bytes]:
    """The sectors of the image's GPT made for a disk of `size` bytes: the protective MBR,
    the primary header and entries, the backup entries and header at the disk's real end.
    sgdisk -e moves them on a sparse scratch file holding the image's head."""
    if head[SECTOR : SECTOR + 8] != b"EFI PART":
        raise ImageError("The image's GPT header cannot be read; it cannot be rebuilt.")
    with tempfile.NamedTemporaryFile(prefix="appliance-gpt-", suffix=".img") as scratch:
        scratch.write(head[:MiB])
        scratch.truncate(size)
        scratch.flush()
        run(["sgdisk", "-e", scratch.name])
        scratch.seek(0)
        first = scratch.read(MiB)
        primary = first[SECTOR : 2 * SECTOR]
        patch = {0: first[:SECTOR], **_gpt_sectors(primary, 1, lambda o, n: first[o : o + n])}
        backup = int.from_bytes(first[SECTOR + 32 : SECTOR + 40], "little")

        def read(offset: int, length: int) -> bytes:
            scratch.seek(offset)
            return scratch.read(length)

        patch.update(_gpt_sectors(read(backup * SECTOR, SECTOR), backup, read))
    if backup * SECTOR != size - SECTOR:
        raise ImageError("sgdisk did not move the image's GPT backup to the disk's end.")
    return patch


def _gpt_sectors(header: bytes, lba: int, read: Callable[[int, int], bytes]) -> dict[int, bytes]:
    """A GPT header sector (at `lba`) and its entries, by offset."""
    sector = header[:SECTOR]
    if sector[:8] != b"EFI PART":
        raise ImageError("The image's GPT header cannot be read after sgdisk rebuilt it.")
    entries = int.from_bytes(sector[72:80], "little")
    length = int.from_bytes(sector[80:84], "little") * int.from_bytes(sector[84:88], "little")
    length = -(-length // SECTOR) * SECTOR
    return {lba * SECTOR: sector, entries * SECTOR: read(entries * SECTOR, length)}

"""import of Clonezilla and Rescuezilla image folders: one folder (one saved disk) becomes an
`Incoming` that jobs/importimage.py stores like any other import, deduplicated.

The manifest is one our own restore (jobs/restore.py) restores onto a disk equal to the
source, so everything Clonezilla's restore would make from the folder's side files is made
here once, at import time:

- "outside" (method "table"): the table and boot area as Clonezilla's restore leaves them.
  A sparse scratch file of the saved disk's size gets the folder's sfdisk dump (written by
  sfdisk, `last-lba` and `device` dropped, as Clonezilla does), then LBA 0's boot code
  (`DISK-mbr`), the hidden data after the MBR (MBR disks) and the boot code of the first EBR
  (`PART-ebr`); the table is read back from that file like a save reads a disk's
  (disk/parted.read_table: `sfdisk --json` kept whole), and the bytes of
  plan/regions.outside_ranges of that layout are read into memory.
- one region per partition from io/clonezillasource.ClonezillaSource: "partclone" for
  partclone streams, "raw" for dd streams; "swap" for swap (never saved; recreated by the
  restore with the UUID and label of `swappt-PART.info`). Labels and UUIDs come from
  `blkid.list`.
- NTFS: partclone never saves the backup boot sector (the sector after the volume, outside
  its bitmap). The imported region carries it: its range is added to the region's used
  ranges, with the primary boot sector's bytes, so any restore of the image writes a correct
  one (Clonezilla's own restore leaves it zero).

Folders this appliance cannot import (LVM, md RAID, LUKS, ecryptfs, ntfsclone streams, a
saveparts folder, several disks, 4096-byte sectors) are refused with one sentence before a
byte is written.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from appliance.disk.model import Disk as Layout
from appliance.disk.model import Partition as LayoutPart
from appliance.disk.parted import TableInfo, read_table
from appliance.errors import ImageError, UnsupportedImage
from appliance.fs.ntfs import BOOT_SIZE, parse_boot_sector
from appliance.io.clonezillasource import ClonezillaSource
from appliance.io.source import SourceRegion
from appliance.jobs.incoming import Incoming
from appliance.plan.regions import gpt_tail_start, merge, outside_ranges, table_record
from appliance.plan.table import saved_script
from appliance.repo.manifest import Region
from appliance.repo.records import DiskRecord
from appliance.shelf import clonezilla
from appliance.shelf.clonezilla import ClonezillaImage, find_images, is_clonezilla
from appliance.tools import run

BOOT_CODE = 440  # LBA 0's boot code (the disk signature and the table follow)
EBR_CODE = 446  # an EBR's boot code (its four entries follow)


def images_in(source: str) -> list[str]:
    """The Clonezilla image folders at `source` (itself, or the folders directly in it), by
    name; empty when there is none."""
    return [p.name for p in find_images(Path(source))]


def folder_named(source: str, image: str) -> Path | None:
    root = Path(source)
    if is_clonezilla(root):
        return root if root.name == image else None
    if "/" not in image and is_clonezilla(root / image):
        return root / image
    return None


def saved_disk(image: ClonezillaImage) -> clonezilla.Disk:
    """The one whole disk of the folder; a sentence when it holds something else."""
    disk = image.one_disk("import")
    if disk.sector_size != 512:
        raise UnsupportedImage(
            f"The Clonezilla image {image.name} is of a disk with {disk.sector_size}-byte "
            "sectors; importing those is not supported yet."
        )
    missing = [p.name for p in disk.partitions if p.method == "none" and p.name in image.parts]
    if missing:
        raise ImageError(
            f"The Clonezilla image {image.name} is incomplete: no stream holds "
            f"{', '.join(missing)}."
        )
    return disk


def disk_size(disk: clonezilla.Disk) -> int:
    """The saved disk's size: pt.parted's, else the GPT's last usable sector plus its backup
    area, else where the last partition ends."""
    if disk.size:
        return disk.size
    if "last-lba" in disk.header:
        return (int(disk.header["last-lba"]) + 34) * disk.sector_size
    return disk.used_end


def _boot_area(disk: clonezilla.Disk, size: int) -> tuple[TableInfo, list[tuple[int, bytes]]]:
    """The table as restored, and the bytes of the boot area around it: written on a
    sparse scratch file of the disk's size, then read back."""
    with tempfile.TemporaryDirectory(prefix="appliance-import-") as folder:
        path = os.path.join(folder, disk.name)
        with open(path, "wb") as handle:
            handle.truncate(size)
        run(
            ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", "--wipe", "never", path],
            input_text=saved_script(disk.sfdisk_json(disk.table.parent.name), path),
        )
        table = read_table(path)
        if table is None:
            raise ImageError(
                f"The partition table {disk.table.name} gives no table when sfdisk writes it."
            )
        first = min((p.start for p in table.partitions), default=size)
        with open(path, "r+b") as handle:
            mbr = disk.boot.get("mbr")
            if mbr is not None:
                handle.seek(0)
                handle.write(mbr.read_bytes()[:BOOT_CODE])
            hidden = disk.boot.get("hidden-data-after-mbr")
            if hidden is not None and disk.label == "dos":
                data = hidden.read_bytes()[: max(0, first - disk.sector_size)]
                handle.seek(disk.sector_size)
                handle.write(data[: len(data) // disk.sector_size * disk.sector_size])
            ebr = disk.boot.get("ebr")
            extended = next((p for p in table.partitions if p.kind == "extended"), None)
            if ebr is not None and extended is not None and any(ebr.read_bytes()[:EBR_CODE]):
                handle.seek(extended.start)
                handle.write(ebr.read_bytes()[:EBR_CODE])
            layout = _layout(disk, size, table)
            ranges = outside_ranges(layout)
            held = []
            for start, length in ranges:
                handle.seek(start)
                held.append((start, handle.read(length)))
    return table, held


def _layout(
    disk: clonezilla.Disk, size: int, table: TableInfo, ids: dict[str, dict[str, str]] | None = None
) -> Layout:
    """The saved disk as the inventory model describes a probed one (no node, no device)."""
    ids = ids or {}
    by_number = {p.number: p for p in disk.partitions}
    parts = []
    for entry in table.partitions:
        saved = by_number.get(entry.number)
        found = ids.get(saved.name, {}) if saved else {}
        label = found.get("LABEL") or (saved.swap_label if saved else None)
        uuid = found.get("UUID") or (saved.swap_uuid if saved else None)
        parts.append(
            LayoutPart(
                number=entry.number,
                start=entry.start,
                size=entry.size,
                node="",
                type=entry.type,
                kind=entry.kind,
                guid=entry.guid,
                name=entry.name,
                flags=entry.flags,
                fstype=None if entry.kind == "extended" or saved is None else saved.fstype,
                fsversion=found.get("VERSION"),
                label=label,
                uuid=uuid,
            )
        )
    return Layout(
        name=disk.name,
        node=f"/dev/{disk.name}",
        size=size,
        logical_sector=disk.sector_size,
        physical_sector=disk.sector_size,
        table=table.type,
        table_id=table.id,
        first_lba=table.first_lba,
        last_lba=table.last_lba,
        partitions=tuple(parts),
        sfdisk=table.sfdisk,
    )


def read_blkid_list(folder: Path) -> dict[str, dict[str, str]]:
    """`blkid.list` (blkid's output when the image was saved): partition name -> its
    fields (LABEL, UUID, TYPE, VERSION, ...)."""
    out: dict[str, dict[str, str]] = {}
    try:
        lines = (folder / "blkid.list").read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        node, colon, rest = line.partition(":")
        if not colon or not node.startswith("/dev/"):
            continue
        name = node.removeprefix("/dev/").replace("/", "-")
        out[name] = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return out


def disk_model(folder: Path, name: str) -> str | None:
    """The saved disk's model, from `blkdev.list` (lsblk's table when the image was saved:
    fixed-width columns, MODEL last); None when it does not say."""
    try:
        lines = (folder / "blkdev.list").read_text(errors="replace").splitlines()
    except OSError:
        return None
    if not lines or "MODEL" not in lines[0]:
        return None
    column = lines[0].index("MODEL")
    for line in lines[1:]:
        words = line.split()
        if words and words[0] == name:
            return line[column:].strip() or None
    return None


def _sfdisk_named(document: dict[str, object] | None, disk: clonezilla.Disk) -> object:
    """The scratch file's `sfdisk --json`, its nodes named as on the saved machine."""
    if document is None:
        return None
    names = {p.number: p.name for p in disk.partitions}
    out = dict(document)
    out["device"] = f"/dev/{disk.name}"
    parts = out.get("partitions")
    if isinstance(parts, list):
        renamed = []
        for entry in parts:
            entry = dict(entry)
            digits = re.search(r"(\d+)$", str(entry.get("node", "")))
            number = int(digits.group(1)) if digits else 0
            if number in names:
                entry["node"] = f"/dev/{names[number]}"
            renamed.append(entry)
        out["partitions"] = renamed
    return out


class ImportSource:
    """The image as an import reads it: "outside" from memory (the boot area made above),
    then each data partition: its stream through ClonezillaSource, nothing for swap or a
    partition the folder holds no stream of. An NTFS region's backup boot sector is its
    primary one: its first window is read when the source is made (and kept: the stream
    goes on from the second)."""

    proves = "partclone checksums"

    def __init__(
        self,
        outside: SourceRegion,
        held: list[tuple[int, bytes]],
        inner: ClonezillaSource,
        regions: list[SourceRegion],
        inner_of: list[int | None],
        ntfs_backup: dict[int, int],
        first: dict[int, bytes],
    ) -> None:
        self._regions = [outside, *regions]
        self._held = held
        self.inner = inner
        self._inner_of = [None, *inner_of]  # region -> region of `inner` (None: not there)
        self._ntfs_backup = ntfs_backup  # region -> offset of its NTFS backup boot sector
        self._first = first  # region -> an NTFS region's first window, read already

    @property
    def regions(self) -> list[SourceRegion]:
        return self._regions

    def read_window(self, region: int, number: int) -> bytes | None:
        src = self._regions[region]
        lo = number * src.window
        length = src.length(number)
        if region == 0:
            buf = bytearray(length)
            for start, held in self._held:
                a, b = max(start, lo), min(start + len(held), lo + length)
                if a < b:
                    buf[a - lo : b - lo] = held[a - start : b - start]
            return bytes(buf)
        inner = self._inner_of[region]
        if inner is None:
            return None
        first = self._first.get(region)
        data = first if first is not None and number == 0 else None
        if data is None:
            data = self.inner.read_window(inner, number)
        backup = self._ntfs_backup.get(region)
        if backup is None or data is None or not lo <= backup < lo + length:
            return data
        assert first is not None
        out = bytearray(data)
        out[backup - lo : backup - lo + BOOT_SIZE] = first[:BOOT_SIZE]
        return bytes(out)

    def window_hash(self, region: int, number: int) -> str | None:
        return None

    def close(self) -> None:
        self.inner.close()


def _ntfs_backup_offset(
    source: ClonezillaSource, index: int, first: bytes, size: int
) -> int | None:
    """Where the backup boot sector of an NTFS partition lies (from its primary, in the
    region's `first` window), None when it does not fit the partition."""
    boot = parse_boot_sector(first[:BOOT_SIZE])
    if boot is None:
        raise ImageError(
            f"The NTFS stream of {source.regions[index].what} does not start with an NTFS "
            "boot sector; the image is damaged."
        )
    offset = boot.backup_offset
    return offset if offset + BOOT_SIZE <= size else None


def from_clonezilla(folder: Path) -> Incoming:
    """The Clonezilla image folder as an import: every check that can refuse it done, every
    partclone header and bitmap read, before anything is written."""
    image = clonezilla.load(folder)
    disk = saved_disk(image)
    size = disk_size(disk)
    table, held = _boot_area(disk, size)
    layout = _layout(disk, size, table, read_blkid_list(folder))
    inner = ClonezillaSource(image, disk)
    try:
        return _incoming(image, disk, layout, table, held, inner)
    except BaseException:
        inner.close()
        raise


def _incoming(
    image: ClonezillaImage,
    disk: clonezilla.Disk,
    layout: Layout,
    table: TableInfo,
    held: list[tuple[int, bytes]],
    inner: ClonezillaSource,
) -> Incoming:
    outside_used = tuple(merge([(start, len(data)) for start, data in held]))
    outside = SourceRegion(
        "outside", None, 0, layout.size, None, outside_used, "the partition table and boot area"
    )
    records = [
        Region(
            name="outside",
            partition=None,
            start=0,
            size=layout.size,
            method="table",
            tail_start=gpt_tail_start(layout),
            used_bytes=sum(n for _, n in outside_used),
        )
    ]
    by_number = {p.number: p for p in disk.partitions}
    inner_index = {r.partition: i for i, r in enumerate(inner.regions)}
    regions: list[SourceRegion] = []
    inner_of: list[int | None] = []
    backups: dict[int, int] = {}
    firsts: dict[int, bytes] = {}
    for part in sorted(layout.partitions, key=lambda p: p.number):
        if part.kind == "extended":
            continue
        saved = by_number.get(part.number)
        index = inner_index.get(part.number)
        region = Region(
            name=f"p{part.number}",
            partition=part.number,
            start=part.start,
            size=part.size,
            method=saved.method if saved is not None and saved.method != "none" else "raw",
            fstype=part.fstype,
            fsversion=part.fsversion,
            label=part.label,
            uuid=part.uuid,
        )
        if index is None:
            used: tuple[tuple[int, int], ...] = ()
            if region.method != "swap":
                region.note = "not saved in the Clonezilla image: restored empty"
            what = region.describe()
        else:
            src = inner.regions[index]
            used, what = src.used, src.what
            if region.fstype == "ntfs" and region.method == "partclone":
                window = inner.read_window(index, 0) or b""
                offset = _ntfs_backup_offset(inner, index, window, part.size)
                if offset is not None:
                    backups[len(records)] = offset
                    firsts[len(records)] = window
                    used = tuple(merge([*used, (offset, BOOT_SIZE)]))
        region.used_bytes = sum(n for _, n in used)
        records.append(region)
        regions.append(
            SourceRegion(region.name, part.number, part.start, part.size, part.fstype, used, what)
        )
        inner_of.append(index)
    sfdisk = _sfdisk_named(table.sfdisk, disk)
    record = table_record(layout, sfdisk if isinstance(sfdisk, dict) else None)
    source = ImportSource(outside, held, inner, regions, inner_of, backups, firsts)
    return Incoming(
        origin=f"{image.kind} {image.name} in {image.path.parent}",
        disk=DiskRecord(
            name=disk.name,
            node=f"/dev/{disk.name}",
            size=layout.size,
            logical_sector=disk.sector_size,
            physical_sector=disk.sector_size,
            model=disk_model(image.path, disk.name),
        ),
        table=record,
        regions=records,
        source=source,
        created=image.date,
        close=source.close,
    )

"""A disk's layout as regions: each partition, and "outside" (the table and boot areas).

"outside" spans the whole disk, but only these bytes of it are used: everything before the
first partition (MBR and its boot code, the primary GPT, the gap after the MBR where GRUB
lives), the space inside an extended partition that no logical partition covers (the EBRs),
and on GPT the backup table after the last usable sector. Unallocated space elsewhere is not
part of any image.
"""

from __future__ import annotations

from typing import Any

from appliance.disk.model import Disk, Partition
from appliance.repo.manifest import Region
from appliance.repo.records import DiskRecord, PartitionRecord, TableRecord


def merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort and merge overlapping or touching (offset, length) ranges; drop empty ones."""
    out: list[tuple[int, int]] = []
    for start, length in sorted(r for r in ranges if r[1] > 0):
        if out and start <= out[-1][0] + out[-1][1]:
            prev_start, prev_len = out[-1]
            out[-1] = (prev_start, max(prev_len, start + length - prev_start))
        else:
            out.append((start, length))
    return out


def data_partitions(disk: Disk) -> list[Partition]:
    """Partitions that hold data (an extended partition is only a container)."""
    return [p for p in disk.partitions if p.kind != "extended"]


def gpt_tail_start(disk: Disk) -> int | None:
    if disk.table != "gpt" or disk.last_lba is None:
        return None
    return (disk.last_lba + 1) * disk.logical_sector


def outside_ranges(disk: Disk) -> list[tuple[int, int]]:
    """The bytes of the disk outside every data partition that an image must keep."""
    parts = data_partitions(disk)
    if disk.table is None:
        return []
    first = min((p.start for p in disk.partitions), default=min(disk.size, 1024 * 1024))
    ranges = [(0, first)]
    for ext in (p for p in disk.partitions if p.kind == "extended"):
        inside = merge([(p.start, p.size) for p in parts if ext.start <= p.start < ext.end])
        pos = ext.start
        for start, length in inside:
            if start > pos:
                ranges.append((pos, start - pos))
            pos = max(pos, start + length)
        if pos < ext.end and not inside:
            ranges.append((pos, min(ext.end - pos, 1024 * 1024)))
    tail = gpt_tail_start(disk)
    if tail is not None and tail < disk.size:
        ranges.append((tail, disk.size - tail))
    return merge([(s, min(length, disk.size - s)) for s, length in ranges if s < disk.size])


def regions(disk: Disk) -> list[Region]:
    """The regions an image of `disk` is made of, "outside" first, then partitions in order."""
    out = [
        Region(
            name="outside",
            partition=None,
            start=0,
            size=disk.size,
            method="table",
            tail_start=gpt_tail_start(disk),
        )
    ]
    if disk.table is None:
        out[0].method = "raw"  # no table: the whole disk is one raw region
        return out
    for part in sorted(data_partitions(disk), key=lambda p: p.number):
        out.append(
            Region(
                name=f"p{part.number}",
                partition=part.number,
                start=part.start,
                size=part.size,
                method="",
                fstype=part.fstype,
                fsversion=part.fsversion,
                label=part.label,
                uuid=part.uuid,
            )
        )
    return out


def table_record(disk: Disk, sfdisk: dict[str, Any] | None = None) -> TableRecord | None:
    """The partition table as the manifest records it; `sfdisk` is `sfdisk --json`'s view,
    kept whole so that a restore onto another size can write the same table, attributes and
    all, with sfdisk."""
    if disk.table is None:
        return None
    return TableRecord(
        type=disk.table,
        sfdisk=sfdisk,
        id=disk.table_id,
        first_lba=disk.first_lba,
        last_lba=disk.last_lba,
        sector=disk.logical_sector,
        partitions=tuple(
            PartitionRecord(
                number=p.number,
                start=p.start,
                size=p.size,
                type=p.type,
                kind=p.kind,
                guid=p.guid,
                name=p.name,
                flags=tuple(p.flags),
            )
            for p in disk.partitions
        ),
    )


def disk_record(disk: Disk) -> DiskRecord:
    return DiskRecord(
        name=disk.name,
        node=disk.node,
        model=disk.model,
        serial=disk.serial,
        size=disk.size,
        logical_sector=disk.logical_sector,
        physical_sector=disk.physical_sector,
    )

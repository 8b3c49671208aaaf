"""A disk's partition table, read with libparted (pyparted) and completed with `sfdisk --json`.

This is the only module that imports `parted`. libparted 3.5 cannot give GPT type GUIDs or
partition GUIDs (pyparted raises NotImplementedError for `Partition.type_uuid`), so those, the
disk GUID or MBR id, the first/last usable LBA and MBR type bytes come from sfdisk. The two
readings must agree on every partition's number, start and size; when they do not, the table
is damaged or ambiguous and DeviceError says so. pyparted never prints: its exception handler
answers "ignore" to warnings and "cancel" to errors, which we turn into DeviceError.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import parted

from appliance.disk.identity import check_readable, partition_number
from appliance.errors import DeviceError
from appliance.tools import run

# Every exception class pyparted raises on behalf of libparted.
_PARTED_ERRORS = (
    parted.PartedException,
    parted.IOException,
    parted.DiskException,
    parted.DeviceException,
    parted.DiskLabelException,
    parted.PartitionException,
    parted.UnknownDeviceException,
    parted.UnknownTypeException,
    parted.GeometryException,
    parted.ConstraintException,
    parted.CreateException,
    parted.AlignmentException,
    NotImplementedError,
)
_LABELS = {"gpt": "gpt", "msdos": "dos"}  # libparted label -> sfdisk label


@dataclass(frozen=True)
class TableEntry:
    """One partition as the table records it; offsets and sizes in bytes."""

    number: int
    start: int
    size: int
    kind: str  # "primary", "extended" or "logical"
    type: str  # GPT type GUID (lower case) or MBR type as two hex digits
    guid: str | None  # GPT partition GUID (lower case)
    name: str | None  # GPT partition name
    flags: tuple[str, ...]  # libparted flag names, sorted


@dataclass(frozen=True)
class TableInfo:
    type: str  # "gpt" or "dos"
    id: str | None  # GPT disk GUID (lower case) or MBR id "0x1234abcd"
    sector_size: int  # logical sector size in bytes
    first_lba: int | None  # GPT first usable LBA
    last_lba: int | None  # GPT last usable LBA
    partitions: tuple[TableEntry, ...]
    # `sfdisk --json`'s "partitiontable" as it printed it (the manifest records it)
    sfdisk: dict[str, Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class PartedEntry:
    """What libparted says about one partition; start and length in sectors."""

    number: int
    start: int
    length: int
    kind: str
    flags: tuple[str, ...]
    name: str | None


@dataclass(frozen=True)
class PartedTable:
    label: str | None  # libparted label name ("gpt", "msdos", ...); None: no table
    sector_size: int
    entries: tuple[PartedEntry, ...]


@dataclass(frozen=True)
class SfdiskEntry:
    number: int
    start: int  # sectors
    size: int  # sectors
    type: str  # normalised like TableEntry.type
    uuid: str | None
    name: str | None


@dataclass(frozen=True)
class SfdiskTable:
    label: str  # "gpt", "dos", ...
    id: str | None
    sector_size: int | None  # None when sfdisk did not say
    first_lba: int | None
    last_lba: int | None
    entries: tuple[SfdiskEntry, ...]
    document: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _damaged(node: str, detail: str) -> DeviceError:
    return DeviceError(
        f"The partition table on {node} looks damaged ({detail}); "
        "repair it (for example with gdisk or fdisk) before using this disk."
    )


def _kind(part_type: int) -> str:
    if part_type & parted.PARTITION_EXTENDED:
        return "extended"
    if part_type & parted.PARTITION_LOGICAL:
        return "logical"
    return "primary"


def read_parted(node: str) -> PartedTable:
    """libparted's reading of the table on `node` (a disk or an image file)."""
    try:
        device = parted.getDevice(node)
    except _PARTED_ERRORS as exc:
        raise DeviceError(f"{node} cannot be opened as a disk: {exc}") from exc
    try:
        sector_size = int(device.sectorSize)
        try:
            label = str(device.getPedDevice().disk_probe().name)
        except parted.IOException:  # libparted found no table it knows
            return PartedTable(None, sector_size, ())
        if label not in _LABELS:
            return PartedTable(label, sector_size, ())
        disk = parted.newDisk(device)
        entries = []
        has_names = bool(disk.supportsFeature(parted.DISK_TYPE_PARTITION_NAME))
        for part in disk.partitions:
            flags = sorted(
                str(name)
                for flag, name in parted.partitionFlag.items()
                if part.isFlagAvailable(flag) and part.getFlag(flag)
            )
            name = str(part.name) if has_names and part.name else None
            entries.append(
                PartedEntry(
                    int(part.number),
                    int(part.geometry.start),
                    int(part.geometry.length),
                    _kind(int(part.type)),
                    tuple(flags),
                    name,
                )
            )
        return PartedTable(label, sector_size, tuple(entries))
    except _PARTED_ERRORS as exc:
        raise DeviceError(f"The partition table on {node} cannot be read: {exc}") from exc
    finally:
        device.removeFromCache()  # libparted caches by path; a new loop device reuses paths


def _type(label: str, value: str) -> str:
    if label == "gpt":
        return str(uuid.UUID(value))
    return f"{int(value, 16):02x}"


def parse_sfdisk_json(text: str, node: str) -> SfdiskTable:
    """Parse `sfdisk --json` output; start and size stay in sectors of `sector_size`."""
    try:
        table = json.loads(text)["partitiontable"]
        label = str(table["label"])
        raw_id = table.get("id")
        if raw_id is None:
            table_id = None
        elif label == "gpt":
            table_id = str(uuid.UUID(str(raw_id)))
        elif label == "dos":
            table_id = f"0x{int(str(raw_id), 16):08x}"
        else:
            table_id = str(raw_id).lower()
        entries = []
        for part in table.get("partitions", []):
            number = partition_number(str(part["node"]))
            if number is None:
                raise _damaged(node, f"sfdisk names a partition {part['node']} without a number")
            name = part.get("name")
            entries.append(
                SfdiskEntry(
                    number=number,
                    start=int(part["start"]),
                    size=int(part["size"]),
                    type=_type(label, str(part["type"])),
                    uuid=str(uuid.UUID(str(part["uuid"])))
                    if label == "gpt" and "uuid" in part
                    else None,
                    name=str(name) if name else None,
                )
            )
        sector_size = table.get("sectorsize")
        first = table.get("firstlba")
        last = table.get("lastlba")
        return SfdiskTable(
            label,
            table_id,
            int(sector_size) if sector_size else None,
            int(first) if first is not None else None,
            int(last) if last is not None else None,
            tuple(entries),
            dict(table),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DeviceError(
            f"sfdisk printed a description of {node} that cannot be read ({exc})."
        ) from exc


def read_sfdisk(node: str) -> SfdiskTable | None:
    """sfdisk's reading of the table on `node`, or None when sfdisk finds no table."""
    proc = run(["sfdisk", "--json", node], check=False, timeout=60)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None  # the node was readable (checked first), so this means "no table"
    return parse_sfdisk_json(proc.stdout, node)


def merge(node: str, lib: PartedTable, sfd: SfdiskTable | None) -> TableInfo | None:
    """Combine the two readings; None when neither sees a table, DeviceError when they differ."""
    lib_label = None if lib.label in (None, "loop") else lib.label  # "loop": a bare filesystem
    if lib_label is None and sfd is None:
        return None
    if lib_label is not None and lib_label not in _LABELS:
        raise DeviceError(
            f"{node} has a partition table of type {lib_label}; the appliance only "
            "works with GPT and MBR (dos) tables."
        )
    if lib_label is None or sfd is None:
        seen = f"libparted reads {lib_label or 'no table'}, sfdisk reads "
        raise _damaged(node, seen + (sfd.label if sfd else "no table"))
    label = _LABELS[lib_label]
    if sfd.label != label:
        raise _damaged(node, f"libparted reads {label}, sfdisk reads {sfd.label}")
    sector = lib.sector_size
    if sfd.sector_size is not None and sfd.sector_size != sector:
        raise DeviceError(
            f"libparted and sfdisk disagree on the sector size of {node} "
            f"({sector} and {sfd.sector_size} bytes)."
        )
    by_start = {entry.start: entry for entry in sfd.entries}
    if len(by_start) != len(sfd.entries) or len(sfd.entries) != len(lib.entries):
        raise _damaged(
            node, f"libparted sees {len(lib.entries)} partitions, sfdisk {len(sfd.entries)}"
        )
    merged = []
    for entry in lib.entries:
        other = by_start.get(entry.start)
        if other is None or other.number != entry.number or other.size != entry.length:
            raise _damaged(node, f"partition {entry.number} differs between libparted and sfdisk")
        merged.append(
            TableEntry(
                number=entry.number,
                start=entry.start * sector,
                size=entry.length * sector,
                kind="primary" if label == "gpt" else entry.kind,
                type=other.type,
                guid=other.uuid,
                name=entry.name if entry.name is not None else other.name,
                flags=entry.flags,
            )
        )
    return TableInfo(
        type=label,
        id=sfd.id,
        sector_size=sector,
        first_lba=sfd.first_lba if label == "gpt" else None,
        last_lba=sfd.last_lba if label == "gpt" else None,
        partitions=tuple(sorted(merged, key=lambda part: part.number)),
        sfdisk=sfd.document,
    )


def read_table(node: str) -> TableInfo | None:
    """The partition table on `node` (a disk or an image file), or None when it has none."""
    if check_readable(node) == 0:
        raise DeviceError(f"{node} is empty (0 bytes); it holds no partition table.")
    return merge(node, read_parted(node), read_sfdisk(node))

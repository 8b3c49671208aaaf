"""The immutable inventory: what a disk is and what is on it. Probed once, then only read.

All offsets and sizes are in bytes from the start of the disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appliance.units import human_size


@dataclass(frozen=True)
class Partition:
    number: int  # 1, 2, ... as the kernel and sfdisk number them
    start: int  # bytes from the start of the disk
    size: int  # bytes
    node: str  # /dev/sda1, /dev/loop3p2 ("" when the kernel has no node for it)
    type: str  # GPT: type GUID, lower case; MBR: two hex digits, e.g. "83", "05"
    kind: str = "primary"  # "primary", "extended" or "logical" (GPT partitions are "primary")
    guid: str | None = None  # GPT partition GUID (lower case)
    name: str | None = None  # GPT partition name
    flags: tuple[str, ...] = ()  # libparted flag names: "boot", "esp", "lvm", ...
    fstype: str | None = None  # blkid TYPE: ext4, xfs, btrfs, ntfs, vfat, exfat, swap, ...
    fsversion: str | None = None  # blkid VERSION, e.g. "FAT32"
    label: str | None = None
    uuid: str | None = None

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class Disk:
    name: str  # kernel name: sda, nvme0n1, loop3
    node: str  # /dev/sda
    size: int  # bytes
    logical_sector: int  # bytes
    physical_sector: int  # bytes
    model: str | None = None
    serial: str | None = None
    devnum: tuple[int, int] = (0, 0)  # major, minor
    removable: bool = False
    readonly: bool = False
    is_loop: bool = False
    backing_file: str | None = None  # loop devices only
    table: str | None = None  # "gpt", "dos" or None (no table)
    table_id: str | None = None  # GPT disk GUID or MBR disk id ("0x1234abcd")
    first_lba: int | None = None  # GPT first usable LBA
    last_lba: int | None = None  # GPT last usable LBA
    partitions: tuple[Partition, ...] = field(default_factory=tuple)
    incomplete: str | None = None  # "incomplete restore of IMAGE, started TIME" (marker)
    # the disk the appliance booted from (appliance.disk.bootmedium): its table is not read
    # (a hybrid ISO's looks like an Apple map to libparted), it is never a source or target
    boot_stick: bool = False
    # `sfdisk --json`'s "partitiontable", read while probing (None: no table, or not probed)
    sfdisk: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        """How the disk is named to a user: model, serial, size and kernel name."""
        parts = [self.model or "Unknown model"]
        if self.serial:
            parts.append(f"serial {self.serial}")
        parts.append(human_size(self.size))
        return f"{' '.join(parts[:1])} ({', '.join(parts[1:])}) at {self.node}"

    def partition(self, number: int) -> Partition | None:
        for part in self.partitions:
            if part.number == number:
                return part
        return None

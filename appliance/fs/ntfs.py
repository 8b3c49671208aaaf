"""The NTFS on-disk facts the engine reads itself: the boot sector (where the backup boot
sector and the MFT are) and the dirty flag in the $Volume record. One parser, used by the
used-block map (fs/usedmap.py) and by the save's preflight (plan/preflight.py)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

SIGNATURE = b"NTFS    "  # the OEM id at byte 3 of the boot sector
BOOT_SIZE = 512
SECTOR_SIZES = (256, 512, 1024, 2048, 4096)
NTFS_DIRTY = 0x0001  # the dirty flag of $VOLUME_INFORMATION
_VOLUME_RECORD = 3  # $Volume is MFT record 3
_VOLUME_INFORMATION = 0x70
_FIXUP_STRIDE = 512


@dataclass(frozen=True)
class BootSector:
    bytes_per_sector: int
    sectors_per_cluster: int  # already decoded (0xF4 means 2**12)
    total_sectors: int  # the volume's size in sectors (the backup boot sector follows)
    mft_cluster: int  # first cluster of the MFT
    clusters_per_record: int  # raw signed byte: negative means 2**-n bytes per record

    @property
    def cluster_size(self) -> int:
        return self.bytes_per_sector * self.sectors_per_cluster

    @property
    def record_size(self) -> int:
        """Bytes of one MFT record."""
        if self.clusters_per_record > 0:
            return self.clusters_per_record * self.cluster_size
        return 1 << -self.clusters_per_record

    @property
    def backup_offset(self) -> int:
        """Where the backup boot sector lies, in bytes from the partition's start."""
        return self.total_sectors * self.bytes_per_sector


def parse_boot_sector(boot: bytes) -> BootSector | None:
    """The NTFS boot sector's geometry; None when `boot` is not an NTFS boot sector."""
    if len(boot) < BOOT_SIZE or boot[3:11] != SIGNATURE:
        return None
    (sector,) = struct.unpack_from("<H", boot, 0x0B)
    per_cluster = boot[0x0D]
    (total,) = struct.unpack_from("<Q", boot, 0x28)
    (mft,) = struct.unpack_from("<Q", boot, 0x30)
    (per_record,) = struct.unpack_from("<b", boot, 0x40)
    return BootSector(
        sector,
        per_cluster if per_cluster <= 0x80 else 1 << (256 - per_cluster),
        total,
        mft,
        per_record,
    )


@dataclass(frozen=True)
class VolumeInfo:
    flags: int
    flags_offset: int  # byte offset of the flags field on the partition


def _fixup(record: bytearray) -> None:
    """Undo the update sequence of an MFT record (the last two bytes of each 512 bytes)."""
    usa_offset, usa_count = struct.unpack_from("<HH", record, 4)
    if usa_count < 2 or usa_offset + 2 * usa_count > len(record):
        raise ValueError("the MFT record's update sequence is damaged")
    usn = bytes(record[usa_offset : usa_offset + 2])
    for number in range(1, usa_count):
        end = number * _FIXUP_STRIDE - 2
        if end + 2 > len(record):
            break
        if bytes(record[end : end + 2]) != usn:
            raise ValueError("the MFT record is torn (update sequence mismatch)")
        record[end : end + 2] = record[usa_offset + 2 * number : usa_offset + 2 * number + 2]


def parse_volume_record(record: bytes, record_offset: int = 0) -> VolumeInfo:
    """The $VOLUME_INFORMATION flags of the $Volume MFT record (raw bytes, fixups applied here)."""
    data = bytearray(record)
    if data[:4] != b"FILE":
        raise ValueError("the $Volume record has no FILE signature")
    _fixup(data)
    offset = struct.unpack_from("<H", data, 0x14)[0]
    while offset + 16 <= len(data):
        kind, length = struct.unpack_from("<II", data, offset)
        if kind == 0xFFFFFFFF or length == 0:
            break
        if kind == _VOLUME_INFORMATION and data[offset + 8] == 0:  # resident
            value = offset + struct.unpack_from("<H", data, offset + 0x14)[0]
            flags = struct.unpack_from("<H", data, value + 0x0A)[0]
            return VolumeInfo(flags, record_offset + value + 0x0A)
        offset += length
    raise ValueError("the $Volume record has no volume information")


def read_volume_info(node: str) -> VolumeInfo:
    """Read the boot sector and the $Volume record of the NTFS on `node`."""
    with open(node, "rb") as device:
        boot = parse_boot_sector(device.read(BOOT_SIZE))
        if boot is None:
            raise ValueError(f"{node} holds no NTFS boot sector")
        where = boot.mft_cluster * boot.cluster_size + _VOLUME_RECORD * boot.record_size
        device.seek(where)
        return parse_volume_record(device.read(boot.record_size), where)

"""fs/ntfs: the one NTFS parser (boot sector, $Volume flags), on a boot sector and a $Volume
record captured from a real mkntfs volume, and on records built here byte by byte.

The data files came from `truncate -s 64M nt.img; mkntfs -F -Q -s 512 -L test nt.img`:
boot-sector.bin is its first 512 bytes, volume-record.bin its MFT record 3 (1 KiB at byte
19456). `ntfsinfo -m nt.img` says: sector 512, cluster 4096, MFT record 1024 bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from appliance.fs.ntfs import (
    NTFS_DIRTY,
    parse_boot_sector,
    parse_volume_record,
    read_volume_info,
)
from appliance.fs.usedmap import _ntfs_boot_backups

DATA = Path(__file__).parent / "data" / "ntfs"
BOOT = (DATA / "boot-sector.bin").read_bytes()
VOLUME = (DATA / "volume-record.bin").read_bytes()
SIZE = 64 * 1024 * 1024


def test_a_real_boot_sector() -> None:
    boot = parse_boot_sector(BOOT)
    assert boot is not None
    assert (boot.bytes_per_sector, boot.cluster_size, boot.record_size) == (512, 4096, 1024)
    # mkntfs keeps the partition's last sector for the backup boot sector
    assert boot.total_sectors == SIZE // 512 - 1
    assert boot.backup_offset == SIZE - 512
    assert boot.mft_cluster * boot.cluster_size + 3 * boot.record_size == 19456


def test_not_ntfs_is_none() -> None:
    assert parse_boot_sector(b"\xebX\x90MSDOS5.0" + bytes(501)) is None
    assert parse_boot_sector(BOOT[:511]) is None


def test_the_used_map_and_the_preflight_read_the_same_boot_sector(tmp_path: Path) -> None:
    image = tmp_path / "ntfs.img"
    with open(image, "wb") as out:
        out.write(BOOT)
        out.seek(19456)
        out.write(VOLUME)
        out.truncate(SIZE)
    assert _ntfs_boot_backups(str(image), SIZE) == [(SIZE - 512, 512), (SIZE - 512, 512)]
    info = read_volume_info(str(image))
    assert info.flags & NTFS_DIRTY == 0
    assert 19456 < info.flags_offset < 19456 + 1024


def test_the_dirty_flag_is_read_where_it_says() -> None:
    clean = parse_volume_record(VOLUME, 19456)
    record = bytearray(VOLUME)
    at = clean.flags_offset - 19456
    struct.pack_into("<H", record, at, NTFS_DIRTY)
    assert parse_volume_record(bytes(record), 19456).flags == NTFS_DIRTY


def volume_record(flags: int, usn: bytes = b"\x07\x00") -> bytes:
    """A 1 KiB $Volume MFT record with a resident $VOLUME_INFORMATION attribute."""
    record = bytearray(1024)
    record[0:4] = b"FILE"
    struct.pack_into("<HH", record, 4, 0x30, 3)  # update sequence at 0x30, 3 entries
    struct.pack_into("<H", record, 0x14, 0x38)  # first attribute
    record[0x30:0x32] = usn
    record[0x32:0x34] = record[510:512]  # the saved bytes of sector 1
    record[0x34:0x36] = record[1022:1024]
    record[510:512] = usn
    record[1022:1024] = usn
    attr = 0x38
    struct.pack_into("<IIB", record, attr, 0x70, 0x28, 0)
    struct.pack_into("<IH", record, attr + 0x10, 12, 0x18)
    struct.pack_into("<BBH", record, attr + 0x18 + 8, 3, 1, flags)
    struct.pack_into("<I", record, attr + 0x28, 0xFFFFFFFF)
    return bytes(record)


def test_volume_flags_are_read_from_the_mft_record() -> None:
    assert parse_volume_record(volume_record(0x0001), 4096).flags == 0x0001
    info = parse_volume_record(volume_record(0x0000), 4096)
    assert info.flags == 0 and info.flags_offset == 4096 + 0x38 + 0x18 + 0x0A


def test_a_torn_record_is_refused() -> None:
    torn = bytearray(volume_record(1))
    torn[510:512] = b"\x00\x09"
    with pytest.raises(ValueError, match="torn"):
        parse_volume_record(bytes(torn))
    with pytest.raises(ValueError, match="FILE"):
        parse_volume_record(bytes(1024))

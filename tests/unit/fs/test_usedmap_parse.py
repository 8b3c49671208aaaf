"""parse_domain_log on domain logs captured from partclone 0.3.23, and the range arithmetic."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from appliance.fs.usedmap import (
    PARTCLONE_PROGRAM,
    UsedMap,
    _last_message,
    _ntfs_boot_backups,
    normalize_ranges,
    parse_domain_log,
    used_map,
)

# partclone.extfs -D on a 64 MiB ext4 (1 KiB blocks) made by `mkfs.ext4 -d` with 3 MB of files
EXT4_64M = """\
# Domain logfile created by unset_name v0.3.23
# Source: e.img
# Offset: 0x00000000
# current_pos  current_status
0x04000000     ?
#      pos        size  status
0x00000000  0x00725000  +
0x00725000  0x000DB400  ?
0x00800400  0x00040800  +
0x00840C00  0x007BF800  ?
0x01000400  0x00400000  +
0x01400400  0x00400000  ?
0x01800400  0x00040800  +
0x01840C00  0x00FBF800  ?
0x02800400  0x00040800  +
0x02840C00  0x00FBF800  ?
0x03800400  0x00040800  +
0x03840C00  0x007BF400  ?
"""

# partclone.extfs -D on a 2 GiB ext4 holding 1.1 GiB of files
EXT4_2G = """\
# Domain logfile created by unset_name v0.3.23
# Source: big.img
# Offset: 0x00000000
# current_pos  current_status
0x80000000     ?
#      pos        size  status
0x00000000  0x46D07000  +
0x46D07000  0x012F9000  ?
0x48000000  0x00101000  +
0x48101000  0x37EFF000  ?
"""

# partclone.xfs -D on an empty 300 MiB xfs
XFS_300M = """\
# Domain logfile created by unset_name v0.3.23
# Source: x.img
# Offset: 0x00000000
# current_pos  current_status
0x12C00000     ?
#      pos        size  status
0x00000000  0x00006000  +
0x00006000  0x0000A000  ?
0x00010000  0x00008000  +
0x00018000  0x04AE8000  ?
0x04B00000  0x00006000  +
0x04B06000  0x04AFA000  ?
0x09600000  0x04006000  +
0x0D606000  0x00AFA000  ?
0x0E100000  0x00006000  +
0x0E106000  0x04AFA000  ?
"""

# partclone.btrfs -D on an empty 128 MiB btrfs
BTRFS_128M = """\
# Domain logfile created by unset_name v0.3.23
# Source: b.img
# Offset: 0x00000000
# current_pos  current_status
0x08000000     ?
#      pos        size  status
0x00000000  0x00014000  +
0x00014000  0x014F0000  ?
0x01504000  0x0000C000  +
0x01510000  0x00FF0000  ?
0x02500000  0x00010000  +
0x02510000  0x00004000  ?
0x02514000  0x0001C000  +
0x02530000  0x01AD0000  ?
0x04000000  0x00004000  +
0x04004000  0x03FFC000  ?
"""

# partclone.ntfs -D on an empty 64 MiB NTFS (mkfs.ntfs -Q): the volume ends one sector short
NTFS_64M = """\
# Domain logfile created by unset_name v0.3.23
# Source: n.img
# Offset: 0x00000000
# current_pos  current_status
0x03FFF000     ?
#      pos        size  status
0x00000000  0x00003000  +
0x00003000  0x00001000  ?
0x00004000  0x00007000  +
0x0000B000  0x007F8000  ?
0x00803000  0x00066000  +
0x00869000  0x01796000  ?
0x01FFF000  0x00201000  +
0x02200000  0x01DFF000  ?
"""

# partclone.fat -D on an empty 40 MiB FAT32; partclone.exfat -D on an empty 32 MiB exFAT
FAT32_40M = """\
# Domain logfile created by unset_name v0.3.23
# Source: f.img
# Offset: 0x00000000
# current_pos  current_status
0x02800000     ?
#      pos        size  status
0x00000000  0x000A1A00  +
0x000A1A00  0x0275E600  ?
"""
EXFAT_32M = """\
# Domain logfile created by unset_name v0.3.23
# Source: ex.img
# Offset: 0x00000000
# current_pos  current_status
0x02000000     ?
#      pos        size  status
0x00000000  0x00204000  +
0x00204000  0x01DFC000  ?
"""

# partclone's log (-L) when it refuses
LOG_NOT_EXT = """\
Partclone v0.3.23 http://partclone.org
Starting to map device (r.img) to domain log (r.dom)
extfsclone.c: Couldn't find valid filesystem superblock.
"""
LOG_EXT_UNRECOVERED = """\
Partclone v0.3.23 http://partclone.org
Starting to map device (jc.img) to domain log (jc.dom)
memory needed: 2105344 bytes
bitmap 8192 bytes, blocks 2*1048576 bytes, checksum 0 bytes
Calculating bitmap... Please wait... extfsclone.c: bitmap free count err, \
partclone get free:56022 but extfs get 56023.
Please run fsck to check and repair the file system
"""
LOG_NTFS_DIRTY = """\
Partclone v0.3.23 http://partclone.org
Starting to map device (nd.img) to domain log (nd.dom)
ntfsclone-ng.c: NTFS Volume 'nd.img' is scheduled for a check or it was shutdown
uncleanly. Please boot Windows or fix it by fsck.
"""
STDERR_NOT_EXT = LOG_NOT_EXT + "Partclone fail, please check r.log !\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            EXT4_64M,
            [
                (0x0, 0x725000),
                (0x800400, 0x40800),
                (0x1000400, 0x400000),
                (0x1800400, 0x40800),
                (0x2800400, 0x40800),
                (0x3800400, 0x40800),
            ],
        ),
        (EXT4_2G, [(0x0, 0x46D07000), (0x48000000, 0x101000)]),
        (
            XFS_300M,
            [
                (0x0, 0x6000),
                (0x10000, 0x8000),
                (0x4B00000, 0x6000),
                (0x9600000, 0x4006000),
                (0xE100000, 0x6000),
            ],
        ),
        (
            BTRFS_128M,
            [
                (0x0, 0x14000),
                (0x1504000, 0xC000),
                (0x2500000, 0x10000),
                (0x2514000, 0x1C000),
                (0x4000000, 0x4000),
            ],
        ),
        (NTFS_64M, [(0x0, 0x3000), (0x4000, 0x7000), (0x803000, 0x66000), (0x1FFF000, 0x201000)]),
        (FAT32_40M, [(0x0, 0xA1A00)]),
        (EXFAT_32M, [(0x0, 0x204000)]),
    ],
    ids=["ext4-64M", "ext4-2G", "xfs", "btrfs", "ntfs", "fat32", "exfat"],
)
def test_captured_logs(text: str, expected: list[tuple[int, int]]) -> None:
    assert parse_domain_log(text) == expected


def test_position_line_is_not_a_range() -> None:
    # The first non-comment line is the current position, even when it looks like a block line;
    # ddrescue itself writes a third field (the pass) there.
    assert parse_domain_log("0x00000000  +  1\n0x0 0x200 +\n") == [(0, 512)]
    assert parse_domain_log("# only comments\n\n0x1000 ?\n") == []
    assert parse_domain_log("") == []


def test_only_finished_blocks_count() -> None:
    text = "0x0 ?\n0x0 0x200 ?\n0x200 0x200 *\n0x400 0x200 /\n0x600 0x200 -\n0x800 0x0 +\n"
    assert parse_domain_log(text) == []


def test_decimal_and_windows_line_ends() -> None:
    assert parse_domain_log("0 ?\r\n1024 4096 +\r\n") == [(1024, 4096)]


@pytest.mark.parametrize(
    "bad",
    [
        "0x0 0x200\n",  # no status
        "0x0 0x200 + extra\n",  # too many fields
        "0x0 0x200 !\n",  # unknown status
        "0xZZ 0x200 +\n",  # not a number
        "-0x200 0x200 +\n",  # negative
    ],
)
def test_malformed_lines_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_domain_log("0x0 ?\n" + bad)


def test_align_outward_and_clip() -> None:
    # partclone's ext4 ranges with 1 KiB blocks start at 0x...400
    assert normalize_ranges([(0x800400, 0x40800)], 1 << 26, 4096) == ((0x800000, 0x41000),)
    assert normalize_ranges([(0x800400, 0x40800)], 1 << 26, 512) == ((0x800400, 0x40800),)
    assert normalize_ranges([(1, 1)], 10_000, 512) == ((0, 512),)
    # clipped to a size that is not a multiple of the alignment
    assert normalize_ranges([(8000, 5000)], 10_000, 4096) == ((4096, 10_000 - 4096),)
    # wholly past the end: dropped; empty or negative-length ranges: dropped
    assert normalize_ranges([(20_000, 512), (0, 0), (512, -5)], 10_000, 512) == ()
    assert normalize_ranges([], 10_000, 512) == ()


def test_sort_and_merge() -> None:
    ranges = [(8192, 512), (0, 1000), (1024, 512), (4096, 4096), (600, 100)]
    # 0-1000 -> 0-1024 touches 1024-1536; 4096-8192 touches 8192-8704
    assert normalize_ranges(ranges, 1 << 20, 512) == ((0, 1536), (4096, 4608))
    # adjacent only after aligning to 4096
    assert normalize_ranges([(0, 100), (5000, 100)], 1 << 20, 4096) == ((0, 8192),)
    # a range inside another
    assert normalize_ranges([(0, 8192), (1024, 512)], 1 << 20, 512) == ((0, 8192),)


def test_bad_alignment() -> None:
    with pytest.raises(ValueError):
        normalize_ranges([(0, 512)], 1024, 0)


def test_captured_log_normalized() -> None:
    ranges = normalize_ranges(parse_domain_log(EXT4_64M), 1 << 26, 4096)
    assert ranges[0] == (0, 0x725000)
    assert all(offset % 4096 == 0 and length % 4096 == 0 for offset, length in ranges)
    used = UsedMap(1 << 26, ranges, "partclone").used_bytes
    assert 0x725000 + 0x400000 < used < 1 << 24


def test_used_bytes() -> None:
    assert UsedMap(4096, ((0, 512), (1024, 1024)), "partclone").used_bytes == 1536
    assert UsedMap(4096, (), "swap").used_bytes == 0


def test_types_partclone_cannot_map() -> None:
    # none of these runs a program: swap is recreated, the rest are copied whole
    assert used_map("/nonexistent", "swap", 1 << 20) == UsedMap(1 << 20, (), "swap")
    for fstype in (None, "crypto_LUKS", "BitLocker", "LVM2_member", "zfs_member"):
        assert used_map("/nonexistent", fstype, 10_000, 4096) == UsedMap(
            10_000, ((0, 10_000),), "raw"
        )
    assert set(PARTCLONE_PROGRAM) == {
        "ext2",
        "ext3",
        "ext4",
        "xfs",
        "btrfs",
        "ntfs",
        "vfat",
        "exfat",
    }


def test_partclone_messages() -> None:
    assert _last_message(STDERR_NOT_EXT) == "Couldn't find valid filesystem superblock."
    assert _last_message(LOG_EXT_UNRECOVERED) == (
        "bitmap free count err, partclone get free:56022 but extfs get 56023. "
        "Please run fsck to check and repair the file system."
    )
    assert _last_message(LOG_NTFS_DIRTY) == (
        "NTFS Volume 'nd.img' is scheduled for a check or it was shutdown uncleanly. "
        "Please boot Windows or fix it by fsck."
    )
    assert _last_message("something odd\n\n") == "something odd."
    assert _last_message("") == ""


def _boot_sector(total_sectors: int, bytes_per_sector: int, oem: bytes = b"NTFS    ") -> bytes:
    boot = bytearray(512)
    boot[0:3] = b"\xebR\x90"
    boot[3:11] = oem
    struct.pack_into("<H", boot, 0x0B, bytes_per_sector)
    struct.pack_into("<Q", boot, 0x28, total_sectors)
    return bytes(boot)


def test_ntfs_backup_boot_sectors(tmp_path: Path) -> None:
    image = tmp_path / "ntfs.img"
    image.write_bytes(_boot_sector(1000, 512) + bytes(1 << 20))
    size = image.stat().st_size
    assert _ntfs_boot_backups(str(image), size) == [(size - 512, 512), (512_000, 512)]
    image.write_bytes(_boot_sector(100, 4096) + bytes(1 << 20))
    assert _ntfs_boot_backups(str(image), size)[1] == (409_600, 4096)
    # not an NTFS boot sector, or a nonsense sector size: only the last sector
    image.write_bytes(_boot_sector(1000, 512, oem=b"MSDOS5.0") + bytes(1 << 20))
    assert _ntfs_boot_backups(str(image), size) == [(size - 512, 512)]
    image.write_bytes(_boot_sector(1000, 3) + bytes(1 << 20))
    assert _ntfs_boot_backups(str(image), size) == [(size - 512, 512)]

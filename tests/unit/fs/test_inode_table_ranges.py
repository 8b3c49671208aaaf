"""Which bytes of an ext4 are known zeros (appliance.fs.inodetables) and the range
arithmetic the save uses to leave them unread (appliance.fs.usedmap)."""

from __future__ import annotations

from appliance.fs.inodetables import parse_dumpe2fs
from appliance.fs.usedmap import inner_ranges, intersect, subtract

HEAD = (
    (
        "Filesystem features:      has_journal ext_attr resize_inode dir_index filetype extent "
        "64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum\n"
    )
    + """Block size:               4096
Inode size:	          256
"""
)
GROUPS = """Group 0: (Blocks 0-32767) csum 0xc3be [ITABLE_ZEROED]
  Primary superblock at 0, Group descriptors at 1-1
  Inode table at 289-800 (+289)
  24281 free blocks, 8181 free inodes, 2 directories, 8000 unused inodes
  Free blocks: 8487-32767
Group 1: (Blocks 32768-65535) csum 0x1d5d [INODE_UNINIT, BLOCK_UNINIT]
  Inode table at 801-1312 (bg #0 + 801)
  32511 free blocks, 8192 free inodes, 0 directories, 8192 unused inodes
Group 2: (Blocks 65536-98303) csum 0x1234 [ITABLE_ZEROED]
  Inode table at 1313-1824 (bg #0 + 1313)
  100 free blocks, 0 free inodes, 9 directories, 0 unused inodes
"""


def test_the_unused_tail_of_each_inode_table_in_whole_blocks() -> None:
    ranges = parse_dumpe2fs(HEAD + GROUPS)
    # group 0: 8000 unused inodes of 256 bytes at the end of blocks 289-800: 500 blocks
    assert ranges[0] == ((801 - 500) * 4096, 500 * 4096)
    assert ranges[1] == (801 * 4096, 512 * 4096)  # group 1: all of it
    assert len(ranges) == 2  # group 2 uses every inode


def test_a_tail_that_starts_inside_a_block_keeps_that_block() -> None:
    text = HEAD + GROUPS.replace("8000 unused inodes", "8001 unused inodes")
    assert parse_dumpe2fs(text)[0] == ((801 - 500) * 4096, 500 * 4096)


def test_nothing_is_known_without_group_checksums_or_figures() -> None:
    assert parse_dumpe2fs(HEAD.replace(" metadata_csum", "") + GROUPS) == []
    assert parse_dumpe2fs(GROUPS) == []
    assert parse_dumpe2fs("") == []
    assert parse_dumpe2fs(HEAD.replace("metadata_csum", "uninit_bg") + GROUPS) != []


def test_range_arithmetic() -> None:
    assert inner_ranges([(100, 9000)], 8192, 4096) == ((4096, 4096),)
    assert inner_ranges([(0, 4000)], 8192, 4096) == ()
    used = [(0, 100), (200, 300)]
    assert intersect(used, [(50, 200)]) == ((50, 50), (200, 50))
    assert subtract(used, [(50, 200)]) == [(0, 50), (250, 250)]
    assert subtract(used, []) == used
    assert subtract([(0, 1000)], [(100, 10), (500, 600)]) == [(0, 100), (110, 390)]

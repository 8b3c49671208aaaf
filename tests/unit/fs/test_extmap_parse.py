"""The ext family's used blocks from dumpe2fs's output (appliance.fs.extmap): the groups'
blocks minus their free ranges, and None (partclone's map instead) whenever the output does
not add up."""

from __future__ import annotations

from appliance.fs.extmap import parse_ext_map

HEAD = """Filesystem features:      has_journal ext_attr resize_inode dir_index filetype extent \
64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum
Block count:              98304
First block:              0
Block size:               4096
Inode size:	          256
"""
GROUPS = """Group 0: (Blocks 0-32767) csum 0xc3be [ITABLE_ZEROED]
  Primary superblock at 0, Group descriptors at 1-1
  Inode table at 289-800 (+289)
  24280 free blocks, 8181 free inodes, 2 directories, 8000 unused inodes
  Free blocks: 8487-32765, 32767
  Free inodes: 12-8192
Group 1: (Blocks 32768-65535) csum 0x1d5d [INODE_UNINIT, BLOCK_UNINIT]
  Inode table at 801-1312 (bg #0 + 801)
  32768 free blocks, 8192 free inodes, 0 directories, 8192 unused inodes
  Free blocks: 32768-65535
  Free inodes: 8193-16384
Group 2: (Blocks 65536-98303) csum 0x1234 [ITABLE_ZEROED]
  Inode table at 1313-1824 (bg #0 + 1313)
  0 free blocks, 0 free inodes, 9 directories, 0 unused inodes
  Free blocks:
  Free inodes:
"""
K4 = 4096


def test_used_blocks_are_each_groups_blocks_but_its_free_ones() -> None:
    found = parse_ext_map(HEAD + GROUPS)
    assert found is not None
    assert found.used == [
        (0, 8487 * K4),  # group 0 up to its first free block
        (32766 * K4, 1 * K4),  # the one used block between its two free ranges
        (65536 * K4, 32768 * K4),  # group 2: all of it (group 1 is all free)
    ]
    # the inode tables' unused tails come from the same output (fs/inodetables.py)
    assert found.zeros[0] == ((801 - 500) * K4, 500 * K4)


def test_a_filesystem_with_1k_blocks_keeps_its_boot_block() -> None:
    head = HEAD.replace("Block size:               4096", "Block size:               1024")
    head = head.replace("First block:              0", "First block:              1")
    head = head.replace("Block count:              98304", "Block count:              8193")
    group = """Group 0: (Blocks 1-8192)
  100 free blocks, 10 free inodes, 2 directories
  Free blocks: 8093-8192
"""
    found = parse_ext_map(head + group)
    assert found is not None
    assert found.used == [(0, 8093 * 1024)]  # block 0 (before the first group) and 1-8092


def test_output_that_does_not_add_up_gives_no_map() -> None:
    # a group's free ranges that do not add up to its own count
    assert parse_ext_map(HEAD + GROUPS.replace("24280 free blocks", "24281 free blocks")) is None
    # a free range outside its group
    assert parse_ext_map(HEAD + GROUPS.replace("32768-65535\n", "32768-65536\n", 1)) is None
    # a missing group (the groups must cover the filesystem)
    assert parse_ext_map(HEAD + GROUPS.split("Group 2")[0]) is None
    # a group without its list of free blocks
    assert parse_ext_map(HEAD + GROUPS.replace("  Free blocks: 32768-65535\n", "")) is None
    # bigalloc: its bitmaps count clusters
    assert parse_ext_map(HEAD.replace("metadata_csum", "metadata_csum bigalloc") + GROUPS) is None
    # not dumpe2fs's output at all
    assert parse_ext_map("dumpe2fs: Bad magic number in super-block") is None

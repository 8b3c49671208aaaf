"""The parts of an ext2/3/4 filesystem's inode tables that hold no inode: known zeros.

partclone's map counts every inode table as used, so an empty 256 GiB ext4 has 4 GiB of
"used" inode tables (and the save would read them all, to find zeros). With group descriptor
checksums (the `metadata_csum` or `uninit_bg` feature), each group records how many inodes at
the end of its table were never used (`bg_itable_unused`); ext4 and e2fsck read none of
them. They are zero once the kernel has initialised the table (ITABLE_ZEROED), and the
kernel zeroes them itself when it has not. So a save may take them as zeros without reading
them, and a restore writes zeros there: what the filesystem reads is the same, and the
image's proof (its fsck) checks the result.

The figures come from `dumpe2fs` (e2fsprogs): the block and inode sizes, the features, and
per group its inode table's blocks and its count of unused inodes. Without the feature, or
when dumpe2fs's output is not understood, nothing is taken as zero.
"""

from __future__ import annotations

import re

from appliance.tools import run

CHECKSUMS = {"metadata_csum", "uninit_bg"}  # features under which bg_itable_unused is kept
BLOCK_SIZE = re.compile(r"^Block size:\s+(\d+)\s*$", re.M)
_INODE = re.compile(r"^Inode size:\s+(\d+)\s*$", re.M)
FEATURES = re.compile(r"^Filesystem features:\s+(.*)$", re.M)
_TABLE = re.compile(r"^\s+Inode table at (\d+)-(\d+)")
_UNUSED = re.compile(r",\s*(\d+) unused inodes\s*$")


def unused_inode_tables(node: str) -> list[tuple[int, int]]:
    """(offset, length) byte ranges of the filesystem at `node` that only unused inodes
    occupy, whole blocks only; [] when the filesystem keeps no count of them."""
    done = run(["dumpe2fs", node], check=False, timeout=600)
    if done.returncode != 0:
        return []
    return parse_dumpe2fs(done.stdout)


def parse_dumpe2fs(text: str) -> list[tuple[int, int]]:
    """The ranges `unused_inode_tables` returns, from dumpe2fs's output."""
    block, inode, features = BLOCK_SIZE.search(text), _INODE.search(text), FEATURES.search(text)
    if block is None or inode is None or features is None:
        return []
    if not CHECKSUMS & set(features.group(1).split()):
        return []
    block_size, inode_size = int(block.group(1)), int(inode.group(1))
    ranges: list[tuple[int, int]] = []
    table: tuple[int, int] | None = None
    for line in text.splitlines():
        found = _TABLE.match(line)
        if found:
            table = (int(found.group(1)), int(found.group(2)))
            continue
        unused = _UNUSED.search(line)
        if unused and table is not None:
            first, last = table
            end = (last + 1) * block_size
            start = end - int(unused.group(1)) * inode_size
            start = -(-start // block_size) * block_size  # whole blocks only
            if first * block_size <= start < end:
                ranges.append((start, end - start))
            table = None
    return ranges

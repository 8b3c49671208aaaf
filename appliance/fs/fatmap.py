"""The used sectors of a FAT12/16/32 filesystem, read from its own allocation table.

partclone.fat -D gives the same map by reading the table one entry at a time, one read()
per cluster: on a 260 MiB FAT32 ESP with 512-byte clusters that is a million system calls
and 0.2 s, the longest of a save's maps. Here the table is read whole and scanned.

What counts as used is what partclone counts: the reserved sectors, every copy of the table
and the root folder (FAT12/16) ahead of the clusters; each cluster whose entry is not free
(0) and not marked bad; and the sectors after the last whole cluster. A table that does not
add up (a boot sector without the 0x55AA signature, sizes that do not fit the partition, a
table too short for its clusters), or a FAT16/32 whose clean flag is not set (partclone
refuses it, and the save copies it whole), gives None: the caller uses partclone's map.
The type is told as Linux and fsck.fat tell it: FAT32 when the boot sector's 16-bit table
size is 0 (mkfs.fat makes FAT32 volumes with fewer clusters than the specification's 65525
when asked), else FAT12 below 4085 clusters and FAT16 from there.
"""

from __future__ import annotations

import itertools
import os
import sys
from array import array

_FAT12_MAX = 4085  # fewer clusters: FAT12
_CLEAN = {16: 0x8000, 32: 0x08000000}  # entry 1: "volume clean" bit
_BAD = {12: 0xFF7, 16: 0xFFF7, 32: 0x0FFFFFF7}


def fat_map(node: str, size: int) -> list[tuple[int, int]] | None:
    """The used (offset, length) byte ranges of the FAT filesystem at `node` (a partition of
    `size` bytes), in order; None when they cannot be read from its table."""
    try:
        fd = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # partclone says why
    try:
        boot = os.pread(fd, 512, 0)
        layout = _layout(boot, size)
        if layout is None:
            return None
        table = os.pread(fd, layout.table_bytes, layout.table_offset)
    except OSError:
        return None  # an unreadable table: partclone's map says why, and the save copies it whole
    finally:
        os.close(fd)
    if len(table) != layout.table_bytes:
        return None
    return layout.used(table)


class _Layout:
    def __init__(
        self,
        sector: int,
        per_cluster: int,
        data_start: int,
        clusters: int,
        total: int,
        table_offset: int,
        fat32: bool,
    ) -> None:
        self.sector = sector  # bytes per sector
        self.per_cluster = per_cluster  # sectors per cluster
        self.data_start = data_start  # first sector of cluster 2
        self.clusters = clusters
        self.total = total  # sectors of the filesystem
        self.bits = 32 if fat32 else 12 if clusters < _FAT12_MAX else 16
        self.table_offset = table_offset
        self.table_bytes = ((clusters + 2) * self.bits + 7) // 8

    def used(self, table: bytes) -> list[tuple[int, int]] | None:
        entries = _entries(table, self.bits, self.clusters + 2)
        if self.bits in _CLEAN and not entries[1] & _CLEAN[self.bits]:
            return None  # not cleanly unmounted: partclone refuses it, the save copies it whole
        cluster = self.per_cluster * self.sector
        out: list[tuple[int, int]] = [(0, self.data_start * self.sector)]
        bad = _BAD[self.bits]
        number = 2
        for taken, run in itertools.groupby(itertools.islice(entries, 2, None), bool):
            count = len(list(run))
            if taken:
                start = number
                for lost in _bad_clusters(entries, number, count, bad):
                    _add(out, self._offset(start, cluster), (lost - start) * cluster)
                    start = lost + 1
                _add(out, self._offset(start, cluster), (number + count - start) * cluster)
            number += count
        tail = self.data_start + self.clusters * self.per_cluster
        _add(out, tail * self.sector, (self.total - tail) * self.sector)
        return out

    def _offset(self, number: int, cluster: int) -> int:
        return self.data_start * self.sector + (number - 2) * cluster


def _add(out: list[tuple[int, int]], start: int, length: int) -> None:
    if length <= 0:
        return
    if out and out[-1][0] + out[-1][1] == start:
        out[-1] = (out[-1][0], out[-1][1] + length)
    else:
        out.append((start, length))


def _bad_clusters(entries: array[int] | list[int], first: int, count: int, bad: int) -> list[int]:
    """The clusters marked bad among `count` taken ones from `first` (none, nearly always:
    one search of the run)."""
    found: list[int] = []
    part = entries[first : first + count]
    at = 0
    while True:
        try:
            at = part.index(bad, at)
        except ValueError:
            return found
        found.append(first + at)
        at += 1


def _entries(table: bytes, bits: int, count: int) -> array[int] | list[int]:
    if bits == 12:
        out = []
        for number in range(count):
            pair = int.from_bytes(table[number * 3 // 2 : number * 3 // 2 + 2], "little")
            out.append(pair >> 4 if number % 2 else pair & 0xFFF)
        return out
    entries = array("H" if bits == 16 else "I")
    if entries.itemsize != bits // 8:
        raise RuntimeError("array item sizes differ on this platform")
    entries.frombytes(table[: count * entries.itemsize])
    if sys.byteorder == "big":
        entries.byteswap()
    return entries


def _layout(boot: bytes, size: int) -> _Layout | None:
    """The filesystem's geometry from its boot sector; None when it does not add up."""
    if len(boot) < 512 or boot[510:512] != b"\x55\xaa":
        return None
    sector = int.from_bytes(boot[11:13], "little")
    per_cluster = boot[13]
    reserved = int.from_bytes(boot[14:16], "little")
    fats = boot[16]
    root_entries = int.from_bytes(boot[17:19], "little")
    total = int.from_bytes(boot[19:21], "little") or int.from_bytes(boot[32:36], "little")
    short_fat = int.from_bytes(boot[22:24], "little")  # 0 on FAT32
    per_fat = short_fat or int.from_bytes(boot[36:40], "little")
    if (
        sector not in (512, 1024, 2048, 4096)
        or per_cluster == 0
        or per_cluster & (per_cluster - 1)
        or reserved == 0
        or fats == 0
        or per_fat == 0
        or total * sector > size
    ):
        return None
    root = (root_entries * 32 + sector - 1) // sector
    data_start = reserved + fats * per_fat + root
    if data_start >= total:
        return None
    layout = _Layout(
        sector,
        per_cluster,
        data_start,
        (total - data_start) // per_cluster,
        total,
        reserved * sector,
        fat32=short_fat == 0,
    )
    if layout.table_bytes > per_fat * sector:
        return None  # the table is too short for its clusters
    return layout

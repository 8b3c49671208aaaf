"""Used-block bitmaps as partclone stores them, kept as bytes (one bit per block).

A bit bitmap (image format 0002) is the bytes of partclone's `unsigned long` array on a
little-endian machine: block N is bit N % 8 of byte N // 8. A byte bitmap (format 0001) holds
one byte per block, 1 for used; it is packed into the bit form here so that a 2 TB partition
of 4 KiB blocks costs 60 MB, not 500 MB, and runs are found the same way for both.

Runs of used blocks are found by the regular-expression engine (whole 0x00 and 0xff bytes are
skipped or taken in C); only bytes that are partly used are looked at bit by bit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_SPANS = re.compile(rb"\xff+|[^\x00\xff]")
_ONE = bytes(1 if i == 1 else 0 for i in range(256))  # a byte-bitmap entry is used when it is 1
_SHIFT = [bytes((v << k) & 0xFF for v in range(256)) for k in range(8)]
_PACK_STEP = 1 << 20  # bytes of byte bitmap packed at a time (a multiple of 8)


def _byte_runs(value: int) -> tuple[tuple[int, int], ...]:
    """The runs [start, end) of set bits of one byte, least significant bit first."""
    runs: list[tuple[int, int]] = []
    bit = 0
    while bit < 8:
        if value >> bit & 1:
            start = bit
            while bit < 8 and value >> bit & 1:
                bit += 1
            runs.append((start, bit))
        else:
            bit += 1
    return tuple(runs)


_BYTE_RUNS = [_byte_runs(v) for v in range(256)]


def pack_byte_bitmap(entries: bytes) -> bytes:
    """A byte bitmap's entries (1 = used, anything else free) as a bit bitmap."""
    packed = bytearray()
    for at in range(0, len(entries), _PACK_STEP):
        part = entries[at : at + _PACK_STEP].translate(_ONE)
        if len(part) % 8:
            part += bytes(8 - len(part) % 8)
        value = 0
        for k in range(8):  # bit k of output byte j is entry 8j + k
            value |= int.from_bytes(part[k::8].translate(_SHIFT[k]), "little")
        packed += value.to_bytes(len(part) // 8, "little")
    return bytes(packed)


def trim(bits: bytes, total: int) -> bytes:
    """The bitmap cut to `total` blocks, with the unused bits of its last byte cleared."""
    size = (total + 7) // 8
    bits = bits[:size]
    if total % 8 and bits:
        last = bits[-1] & ((1 << (total % 8)) - 1)
        bits = bits[:-1] + bytes((last,))
    return bits


def count_used(bits: bytes) -> int:
    """How many blocks the bitmap marks used."""
    step = 8 << 20
    return sum(
        int.from_bytes(bits[at : at + step], "little").bit_count()
        for at in range(0, len(bits), step)
    )


def runs(bits: bytes) -> Iterator[tuple[int, int]]:
    """(first block, count) of each run of used blocks, in order, merged."""
    start = end = -1
    for match in _SPANS.finditer(bits):
        at, stop = match.span()
        base = at * 8
        pieces = ((0, (stop - at) * 8),) if bits[at] == 0xFF else _BYTE_RUNS[bits[at]]
        for first, last in pieces:
            if base + first == end:
                end = base + last
                continue
            if end > start >= 0:
                yield start, end - start
            start, end = base + first, base + last
    if end > start >= 0:
        yield start, end - start

"""The reader's parts: bitmap runs and packing against a plain bit-by-bit walk, partclone's
CRC32 against its table loop, XXH64/XXH3-128 against the xxHash specification's vectors."""

from __future__ import annotations

import random

import pytest
from kit import partclone as pc

from appliance.shelf import bitmap, checksums


def naive_runs(bits: bytes, total: int) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for n in range(total):
        if bits[n // 8] >> (n % 8) & 1:
            if runs and runs[-1][0] + runs[-1][1] == n:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((n, 1))
    return runs


@pytest.mark.parametrize("seed", range(6))
def test_runs_and_counts_match_a_bit_by_bit_walk(seed: int) -> None:
    rng = random.Random(seed)
    total = rng.randrange(1, 5000)
    raw = bytes(rng.choice([0, 0xFF, rng.randrange(256)]) for _ in range((total + 7) // 8))
    bits = bitmap.trim(raw + b"\xff", total)  # a stray byte and stray bits are cut off
    expected = naive_runs(bits, total)
    assert list(bitmap.runs(bits)) == expected
    assert bitmap.count_used(bits) == sum(n for _, n in expected)
    assert all(first + n <= total for first, n in expected)


def test_a_byte_bitmap_packs_to_the_same_bits() -> None:
    rng = random.Random(3)
    entries = bytes(rng.choice([0, 1, 1, 2, 0xFF]) for _ in range(3 * (1 << 20) + 13))
    packed = bitmap.pack_byte_bitmap(entries)
    assert len(packed) == (len(entries) + 7) // 8
    assert [n for n in range(len(entries)) if packed[n // 8] >> (n % 8) & 1] == [
        n
        for n, v in enumerate(entries)
        if v == 1  # only 1 means used, as partclone reads it
    ]


def test_crc32_is_partclones_table_loop_with_and_without_reseed() -> None:
    def table_crc(crc: int, data: bytes) -> int:
        for byte in data:
            crc = (crc >> 8) ^ pc._TABLE[(crc ^ byte) & 0xFF]
        return crc

    blocks = [random.Random(n).randbytes(700) for n in range(3)]
    running = checksums.Crc32()
    crc = 0xFFFFFFFF
    for block in blocks:  # no reseed: the register runs on
        running.update(block)
        crc = table_crc(crc, block)
        assert running.digest() == crc.to_bytes(4, "little")
    running.reset()
    running.update(blocks[0])
    assert running.digest() == table_crc(0xFFFFFFFF, blocks[0]).to_bytes(4, "little")
    old = checksums.Crc32Format1()
    old.update(blocks[1])
    assert old.digest() == pc.crc_0001(0xFFFFFFFF, blocks[1]).to_bytes(4, "little")


def test_xxhash_digests_are_the_specifications_vectors_in_partclones_byte_order() -> None:
    x64 = checksums.Xxh64()
    assert x64.digest() == (0xEF46DB3751D8E999).to_bytes(8, "little")  # XXH64("", 0)
    x128 = checksums.Xxh128()
    empty = (0x6001C324468D497F).to_bytes(8, "little") + (0x99AA06D3014798D8).to_bytes(8, "little")
    assert x128.digest() == empty  # XXH3-128(""): low 64 bits first, as memcpy'd
    x64.update(b"abc")
    x64.reset()
    assert x64.digest() == (0xEF46DB3751D8E999).to_bytes(8, "little")

"""The partclone image reader on images made by the real partclone (format 0002, with and
without checksums, several -k values, reseeded or not) from real ext4, FAT and NTFS
filesystems, and on format 0001 images written from the format's facts and proven by the real
`partclone -r`. The oracle is always what the real partclone restores."""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import itertools
import os
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from kit import partclone as pc

from appliance.errors import CorruptData, UnsupportedImage
from appliance.shelf.partclone import PartcloneReader
from appliance.shelf.streams import open_stream

FILES = {
    "random.bin": random.Random(7).randbytes(700_000),
    "marker.txt": b"MARKER-" + b"0123456789abcdef" * 300,
    "zeros.bin": bytes(50_000),
    "text.txt": b"every image on the shelf\n" * 4000,
}
SIZES_MB = {"ext4": 24, "fat": 20, "ntfs": 24}


def assemble(reader: PartcloneReader, size: int) -> bytes:
    """The partition as the reader's blocks lay it out on a zeroed target."""
    out = bytearray(size)
    end = 0
    for offset, data in reader.blocks():
        assert offset >= end, "blocks out of order or overlapping"
        out[offset : offset + len(data)] = data
        end = offset + len(data)
    return bytes(out)


def read_file(path: Path) -> tuple[PartcloneReader, bytes]:
    with open(path, "rb") as f:
        reader = PartcloneReader(f, "partition sda1")
        return reader, assemble(reader, reader.header.device_size)


@pytest.fixture(scope="module")
def filesystems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("fs")
    return {
        kind: pc.make_fs(kind, where / f"{kind}.img", SIZES_MB[kind], FILES) for kind in SIZES_MB
    }


CASES = [
    ("ext4", 1, None, True),
    ("ext4", 1, 1, True),
    ("ext4", 1, 7, False),
    ("ext4", 0, None, True),
    ("fat", 1, 3, True),
    ("fat", 0, None, True),
    ("ntfs", 1, None, True),
    ("ntfs", 1, 64, False),
]


@pytest.mark.parametrize(("kind", "checksum", "per", "reseed"), CASES)
def test_reader_gives_what_partclone_restores(
    filesystems: dict[str, Path],
    tmp_path: Path,
    kind: str,
    checksum: int,
    per: int | None,
    reseed: bool,
) -> None:
    image = pc.clone(
        kind, filesystems[kind], tmp_path / "p.img", checksum=checksum, per=per, reseed=reseed
    )
    reader, data = read_file(image)
    head = reader.header
    said = pc.info(image)
    assert (head.version, head.block_size) == (2, said["block_size"])
    assert (head.total_blocks, head.used_blocks) == (said["total_blocks"], said["used_blocks"])
    assert head.checksum == ("crc32" if checksum else "none")
    assert head.reseed is reseed
    assert head.image_size == image.stat().st_size
    restored = pc.restore(image, tmp_path / "restored", head.device_size)
    assert data == restored
    # the used ranges cover exactly what the blocks gave, and hold all the filesystem's data
    ranges = reader.used_ranges()
    assert sum(length for _, length in ranges) == head.used_bytes
    assert all(a + n < b for (a, n), (b, _) in itertools.pairwise(ranges))
    source = filesystems[kind].read_bytes()
    for offset, length in ranges:
        assert data[offset : offset + length] == source[offset : offset + length]
    assert FILES["random.bin"][:4096] in data


def test_a_compressed_image_is_read_through_the_shelf_streams(
    filesystems: dict[str, Path], tmp_path: Path
) -> None:
    image = pc.clone("ext4", filesystems["ext4"], tmp_path / "p.img")
    packed = tmp_path / "sda1.ext4-ptcl-img.zst"
    subprocess.run(["zstd", "-q", "-T2", str(image), "-o", str(packed)], check=True)
    with open_stream(packed, "partition sda1") as stream:
        reader = PartcloneReader(stream, "partition sda1")
        data = assemble(reader, reader.header.device_size)
    assert data == pc.restore(image, tmp_path / "restored", reader.header.device_size)


# ---- format 0001 ----


def v1_used_blocks(source: bytes, block_size: int) -> list[int]:
    """Every block holding data, and a few zero ones, so that runs and gaps both occur."""
    blocks = len(source) // block_size
    used = [n for n in range(blocks) if any(source[n * block_size : (n + 1) * block_size])]
    return sorted(set(used) | set(range(0, blocks, 97)))


@pytest.mark.parametrize("block_size", [4096, 1024])
def test_format_0001_written_from_the_facts_is_what_partclone_restores(
    filesystems: dict[str, Path], tmp_path: Path, block_size: int
) -> None:
    source = filesystems["ext4"].read_bytes()
    used = v1_used_blocks(source, block_size)
    image = pc.write_v1(tmp_path / "v1.img", filesystems["ext4"], block_size, used)
    restored = pc.restore(image, tmp_path / "restored", len(source))
    for n in used:  # partclone accepts our writer's image and restores its blocks
        assert (
            restored[n * block_size : (n + 1) * block_size]
            == source[n * block_size : (n + 1) * block_size]
        )
    reader, data = read_file(image)
    head = reader.header
    assert (head.version, head.checksum, head.bitmap) == (1, "crc32-0001", "byte")
    assert head.used_blocks == len(used) and head.image_size == image.stat().st_size
    assert data == restored


def test_format_0001_with_8_byte_crcs_of_old_64_bit_builds(
    filesystems: dict[str, Path], tmp_path: Path
) -> None:
    source = filesystems["fat"]
    used = v1_used_blocks(source.read_bytes(), 512)
    narrow = pc.write_v1(tmp_path / "narrow.img", source, 512, used, fs="FAT")
    wide = pc.write_v1(tmp_path / "wide.img", source, 512, used, fs="FAT", wide_crc=True)
    assert wide.stat().st_size == narrow.stat().st_size + 4 * len(used)
    assert (
        read_file(wide)[1]
        == read_file(narrow)[1]
        == pc.restore(narrow, tmp_path / "r", source.stat().st_size)
    )


def test_format_0001_damage_is_found_by_its_crc(
    filesystems: dict[str, Path], tmp_path: Path
) -> None:
    source = filesystems["ext4"].read_bytes()
    used = v1_used_blocks(source, 4096)
    image = pc.write_v1(tmp_path / "v1.img", filesystems["ext4"], 4096, used)
    raw = bytearray(image.read_bytes())
    # format 0001's CRC sees only a block's first byte: damage that byte of the 10th block
    at = 4160 + len(source) // 4096 + 8 + 9 * (4096 + 4)
    raw[at] ^= 0x01
    with pytest.raises(CorruptData, match=rf"checksum of its block {used[9]} does not match"):
        read_file(write(tmp_path / "bad.img", raw))


# ---- damage ----


def write(path: Path, data: bytes | bytearray) -> Path:
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("per", [1, 16])
def test_a_flipped_byte_in_a_block_is_found_and_its_block_named(
    filesystems: dict[str, Path], tmp_path: Path, per: int
) -> None:
    image = pc.clone("ext4", filesystems["ext4"], tmp_path / "p.img", per=per)
    source = filesystems["ext4"].read_bytes()
    block = source.index(b"MARKER-") // 4096  # where the filesystem holds the marker
    raw = bytearray(image.read_bytes())
    raw[raw.index(b"MARKER-") + 3] ^= 0x20
    pc.check_image(image)
    with pytest.raises(AssertionError):  # partclone's own check finds it too
        pc.check_image(write(tmp_path / "bad.img", raw))
    with pytest.raises(CorruptData) as caught:
        read_file(tmp_path / "bad.img")
    sentence = str(caught.value)
    assert sentence.startswith("partition sda1 is damaged: the checksum of its block")
    if per == 1:
        assert f"of its block {block} does not match" in sentence
    else:
        first, last = (int(n) for n in sentence.split("blocks ")[1].split(" does")[0].split(" to "))
        assert first <= block <= last
    assert "\n" not in sentence


def test_a_truncated_stream_is_one_sentence(filesystems: dict[str, Path], tmp_path: Path) -> None:
    image = pc.clone("ext4", filesystems["ext4"], tmp_path / "p.img")
    raw = image.read_bytes()
    for cut in (50, 400, len(raw) // 2, len(raw) - 2):
        with pytest.raises(
            CorruptData, match=r"^partition sda1 is cut short: the image ends inside"
        ):
            read_file(write(tmp_path / "cut.img", raw[:cut]))


def test_a_damaged_bitmap_crc_is_one_sentence(filesystems: dict[str, Path], tmp_path: Path) -> None:
    image = pc.clone("ntfs", filesystems["ntfs"], tmp_path / "p.img")
    raw = bytearray(image.read_bytes())
    raw[110 + 3] ^= 0x01  # the bitmap starts after the 110-byte description
    with pytest.raises(CorruptData, match=r"^The bitmap of partition sda1 is damaged \(its CRC"):
        read_file(write(tmp_path / "bad.img", raw))


def test_damaged_description_foreign_file_and_trailing_data(
    filesystems: dict[str, Path], tmp_path: Path
) -> None:
    image = pc.clone("fat", filesystems["fat"], tmp_path / "p.img")
    raw = bytearray(image.read_bytes())
    bad = bytearray(raw)
    bad[60] ^= 0x01  # inside the total block count
    with pytest.raises(CorruptData, match=r"^The description of partition sda1 is damaged"):
        read_file(write(tmp_path / "bad.img", bad))
    with pytest.raises(UnsupportedImage, match=r"not a partclone image"):
        read_file(write(tmp_path / "foreign.img", os.urandom(5000)))
    future = bytearray(raw)
    future[30:34] = b"0003"
    with pytest.raises(UnsupportedImage, match=r"format '0003'"):
        read_file(write(tmp_path / "future.img", future))
    with pytest.raises(CorruptData, match=r"data follows its last block"):
        read_file(write(tmp_path / "long.img", raw + b"\0"))


def test_blocks_are_bounded_and_in_order(filesystems: dict[str, Path], tmp_path: Path) -> None:
    image = pc.clone("ext4", filesystems["ext4"], tmp_path / "p.img", per=5)
    with open(image, "rb") as f:
        reader = PartcloneReader(io.BufferedReader(f, buffer_size=1000), "partition sda1")
        items = list(reader.blocks())
    assert all(len(data) <= 4 << 20 and len(data) % 4096 == 0 for _, data in items)
    assert [o for o, _ in items] == sorted(o for o, _ in items)


# ---- format 0002 from the facts: xxHash checksums (partclone builds newer than Debian's) ----


def _xxh_lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
    lib.XXH64.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]
    lib.XXH64.restype = ctypes.c_uint64

    class Hash128(ctypes.Structure):
        _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]

    lib.XXH3_128bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.XXH3_128bits.restype = Hash128
    return lib


def one_shot(kind: str) -> Callable[[bytes], bytes]:
    """The digest of a whole buffer in one call, stored as partclone memcpy's it."""
    lib = _xxh_lib()
    if kind == "xxh64":
        return lambda data: int(lib.XXH64(data, len(data), 0)).to_bytes(8, "little")
    if kind == "xxh128":

        def x128(data: bytes) -> bytes:
            value = lib.XXH3_128bits(data, len(data))
            return int(value.low64).to_bytes(8, "little") + int(value.high64).to_bytes(8, "little")

        return x128
    return lambda data: pc.table_crc(data).to_bytes(4, "little")


XXH_CASES = [("xxh64", 1, True), ("xxh64", 6, False), ("xxh128", 4, True), ("xxh128", 3, False)]


@pytest.mark.parametrize(("kind", "per", "reseed"), XXH_CASES)
def test_xxhash_images_are_read_and_their_damage_found(
    filesystems: dict[str, Path], tmp_path: Path, kind: str, per: int, reseed: bool
) -> None:
    source = filesystems["fat"].read_bytes()
    used = v1_used_blocks(source, 2048)
    image = pc.write_v2(tmp_path / "x.img", filesystems["fat"], 2048, used, checksum=kind,
                        digest=one_shot(kind), per=per, reseed=reseed)  # fmt: skip
    reader, data = read_file(image)
    assert (reader.header.checksum, reader.header.reseed) == (kind, reseed)
    assert reader.header.image_size == image.stat().st_size
    expected = bytearray(len(source))
    for n in used:
        expected[n * 2048 : (n + 1) * 2048] = source[n * 2048 : (n + 1) * 2048]
    assert data == bytes(expected)
    raw = bytearray(image.read_bytes())
    raw[-(2048 * 3)] ^= 0x04  # inside one of the last blocks
    with pytest.raises(CorruptData, match=r"^partition sda1 is damaged: the checksum of its block"):
        read_file(write(tmp_path / "bad.img", raw))


def test_an_image_without_a_bitmap_holds_every_block(
    filesystems: dict[str, Path], tmp_path: Path
) -> None:
    image = pc.write_v2(tmp_path / "all.img", filesystems["fat"], 4096, None, checksum="crc32",
                        digest=one_shot("crc32"), per=10)  # fmt: skip
    reader, data = read_file(image)
    assert reader.header.bitmap == "none" and reader.used_ranges() == [(0, len(data))]
    assert data == filesystems["fat"].read_bytes() == pc.restore(image, tmp_path / "r", len(data))
    big = bytearray(image.read_bytes())
    big[34:36] = b"\xc0\xde"  # the endianness mark as a big-endian writer stores it
    with pytest.raises(UnsupportedImage, match="big-endian"):
        read_file(write(tmp_path / "big.img", big))

"""Streams of other tools' files: split pieces joined, compressors found by magic and read
by the real command-line tools' output (gzip, pigz-style members, zstd frames, xz, bzip2,
lz4), damage named in one sentence."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from appliance.errors import CorruptData, UnsupportedImage
from appliance.shelf.streams import compression_of, open_stream, pieces

PAYLOAD = os.urandom(300_000) + bytes(700_000) + b"partclone-image" * 5000

TOOLS = {
    "gzip": ["gzip", "-c"],
    "zstd": ["zstd", "-q", "-c"],
    "xz": ["xz", "-c", "-T1"],
    "bzip2": ["bzip2", "-c"],
    "lz4": ["lz4", "-q", "-c"],
}


def compress(kind: str, data: bytes) -> bytes:
    return subprocess.run(TOOLS[kind], input=data, capture_output=True, check=True).stdout


def read_all(path: Path) -> bytes:
    with open_stream(path, "partition sda1") as stream:
        return stream.read()


@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_each_compressor_is_found_by_magic_and_read(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "sda1.ext4-ptcl-img.renamed"  # the name says nothing
    path.write_bytes(compress(kind, PAYLOAD))
    assert compression_of(path) == kind
    assert read_all(path) == PAYLOAD


@pytest.mark.parametrize("kind", ["gzip", "zstd", "xz", "bzip2", "lz4"])
def test_members_and_frames_written_one_after_another_read_as_one_stream(
    tmp_path: Path, kind: str
) -> None:
    # pigz, pzstd and pbzip2 write several members; cat of two compressed files is the same
    path = tmp_path / "multi"
    path.write_bytes(compress(kind, PAYLOAD[:400_000]) + compress(kind, PAYLOAD[400_000:]))
    assert read_all(path) == PAYLOAD


def test_uncompressed_stream_reads_as_is(tmp_path: Path) -> None:
    path = tmp_path / "sda1.dd-img"
    path.write_bytes(PAYLOAD)
    assert compression_of(path) == "none"
    assert read_all(path) == PAYLOAD


def test_split_pieces_are_joined_in_order(tmp_path: Path) -> None:
    whole = tmp_path / "whole.zst"
    whole.write_bytes(compress("zstd", PAYLOAD))
    subprocess.run(
        ["split", "-b", "100000", "-a", "2", str(whole), str(tmp_path / "sda2.ntfs-ptcl-img.zst.")],
        check=True,
    )
    base = tmp_path / "sda2.ntfs-ptcl-img.zst"
    found = pieces(base)
    assert [p.name[-2:] for p in found][:3] == ["aa", "ab", "ac"]
    assert len(found) == -(-whole.stat().st_size // 100000)
    assert read_all(base) == PAYLOAD


def test_a_missing_piece_is_named(tmp_path: Path) -> None:
    for suffix in ("aa", "ab", "ad"):
        (tmp_path / f"img.gz.{suffix}").write_bytes(b"x")
    with pytest.raises(CorruptData, match=r"img\.gz\.ac is missing"):
        pieces(tmp_path / "img.gz")


def test_a_missing_stream_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedImage, match="is missing"):
        pieces(tmp_path / "nothing.gz")


@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_a_cut_short_stream_is_named(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "cut"
    blob = compress(kind, PAYLOAD)
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CorruptData, match=rf"{kind} stream of partition sda1"):
        read_all(path)


@pytest.mark.parametrize("kind", ["gzip", "xz", "bzip2", "lz4", "zstd"])
def test_a_flipped_byte_is_found(tmp_path: Path, kind: str) -> None:
    blob = bytearray(compress(kind, PAYLOAD))
    blob[len(blob) // 3] ^= 0x40
    path = tmp_path / "flipped"
    path.write_bytes(bytes(blob))
    try:
        data = read_all(path)
    except CorruptData:
        return
    # zstd without a content checksum may decode a flip into other bytes: never silently equal
    assert data != PAYLOAD


def test_an_unknown_compressor_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "x.lzo"
    path.write_bytes(b"\x89LZO\x00\r\n\x1a\n" + bytes(100))
    with pytest.raises(UnsupportedImage, match="compressed with lzop"):
        read_all(path)

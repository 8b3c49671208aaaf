"""ClonezillaSource: windows of a Clonezilla folder's partitions, read in order from their
streams. Streams made by the real tools: partclone.ext4 -c on an ext4 made in a file, gzip,
zstd, split."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import pytest
import zstandard

from appliance.errors import CorruptData
from appliance.io.clonezillasource import ClonezillaSource
from appliance.io.windows import WINDOW
from appliance.shelf.clonezilla import load

MiB = 1024 * 1024
RAW_SIZE = 9 * MiB + 4096  # not a whole number of windows


def folder(tmp_path: Path) -> Path:
    """A Clonezilla folder of disk sdz: p1 raw (RAW_SIZE), p2 ext4 (16 MiB)."""
    out = tmp_path / "img"
    out.mkdir()
    (out / "disk").write_text("sdz\n")
    (out / "parts").write_text("sdz1 sdz2\n")
    (out / "sdz-pt.sf").write_text(
        "label: dos\nlabel-id: 0x1234abcd\ndevice: /dev/sdz\nunit: sectors\n"
        "sector-size: 512\n\n"
        f"/dev/sdz1 : start=2048, size={RAW_SIZE // 512}, type=83\n"
        f"/dev/sdz2 : start={2048 + RAW_SIZE // 512}, size=32768, type=83\n"
    )
    return out


def split(data: bytes, base: Path, piece: int) -> None:
    for number, offset in enumerate(range(0, len(data), piece)):
        suffix = (
            "abcdefghijklmnopqrstuvwxyz"[number // 26] + "abcdefghijklmnopqrstuvwxyz"[number % 26]
        )
        Path(f"{base}.{suffix}").write_bytes(data[offset : offset + piece])


@pytest.fixture
def raw_bytes() -> bytes:
    return os.urandom(3 * MiB) + bytes(RAW_SIZE - 3 * MiB - 100) + b"\x01" * 100


@pytest.fixture
def ext4(tmp_path: Path) -> tuple[Path, Path]:
    """An ext4 in a 16 MiB file with a few files, and its partclone image (uncompressed)."""
    fs = tmp_path / "fs.img"
    with open(fs, "wb") as f:
        f.truncate(16 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(Path(__file__).parent), str(fs)], check=True)
    image = tmp_path / "fs.pc"
    subprocess.run(
        ["partclone.ext4", "-f", "0", "-c", "-s", str(fs), "-O", str(image), "-L", "/dev/null"],
        check=True,
        capture_output=True,
    )
    return fs, image


def test_windows_in_order_and_backwards(
    tmp_path: Path, raw_bytes: bytes, ext4: tuple[Path, Path]
) -> None:
    out = folder(tmp_path)
    split(gzip.compress(raw_bytes, 1), out / "sdz1.dd-ptcl-img.gz", 1_000_000)
    fs, image = ext4
    (out / "sdz2.ext4-ptcl-img.zst").write_bytes(
        zstandard.ZstdCompressor().compress(image.read_bytes())
    )
    img = load(out)
    with ClonezillaSource(img, img.disks[0]) as source:
        raw, part = source.regions
        assert raw.used == ((0, RAW_SIZE),)
        got = b"".join(source.read_window(0, w.number) or b"" for w in raw.windows(0))
        assert got == raw_bytes
        assert source.read_window(0, 0) == raw_bytes[:WINDOW]  # backwards: the stream again

        assert part.fstype == "ext4" and part.size == 16 * MiB
        assert 0 < sum(n for _, n in part.used) < 16 * MiB
        disk = fs.read_bytes()
        for win in part.windows(1):
            data = source.read_window(1, win.number)
            assert data is not None and len(data) == win.length
            lo = win.number * WINDOW
            for start, length in win.used:  # used bytes as the filesystem holds them
                assert data[start : start + length] == disk[lo + start : lo + start + length]


def test_cut_raw_stream_is_one_sentence(tmp_path: Path, raw_bytes: bytes) -> None:
    out = folder(tmp_path)
    (out / "sdz1.dd-ptcl-img.gz").write_bytes(gzip.compress(raw_bytes[: 5 * MiB], 1))
    img = load(out)
    with (
        ClonezillaSource(img, img.disks[0]) as source,
        pytest.raises(
            CorruptData, match=r"raw stream of partition sdz1 \(raw\) of Clonezilla image img ends"
        ),
    ):
        for win in source.regions[0].windows(0):
            source.read_window(0, win.number)

"""io.rawfile: an image source written out as one disk file (.img sparse, .img.zst), with
a small in-memory source at the ImageSource seam (its regions overlap as ours do: "outside"
spans the whole disk, partitions sit inside it)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import zstandard

from appliance.errors import Cancelled, UsageError
from appliance.io import rawfile
from appliance.io.rawfile import BLOCK, WithBytes, file_kind, pieces, write_file
from appliance.io.source import SourceRegion

WIN = 64 * 1024  # small windows keep the files small
DISK = 40 * WIN


class MemorySource:
    """A disk held in memory, as regions of windows; reads are counted."""

    proves = "nothing"

    def __init__(self, disk: bytes, regions: list[SourceRegion]) -> None:
        self.disk = disk
        self._regions = regions
        self.reads: list[tuple[int, int]] = []
        self.lock = threading.Lock()

    @property
    def regions(self) -> list[SourceRegion]:
        return self._regions

    def read_window(self, region: int, number: int) -> bytes | None:
        with self.lock:
            self.reads.append((region, number))
        src = self._regions[region]
        lo = src.start + number * src.window
        data = bytearray(self.disk[lo : lo + src.length(number)])
        keep = bytearray(len(data))
        for start, size in src.used:  # only the used bytes, as a saved window holds them
            a, b = (
                max(start - number * src.window, 0),
                min(start + size - number * src.window, len(data)),
            )
            if a < b:
                keep[a:b] = data[a:b]
        return None if not any(keep) else bytes(keep)

    def window_hash(self, region: int, number: int) -> str | None:
        return None


def region(name: str, start: int, size: int, used: list[tuple[int, int]]) -> SourceRegion:
    return SourceRegion(name, None, start, size, None, tuple(used), name, WIN)


@pytest.fixture
def source() -> MemorySource:
    """The boot area (first 2 windows, and the disk's last window), p1 at window 2 with
    used data in windows 0, 3 (an all-zero used window) and 5, p2 after it, unused."""
    disk = bytearray(os.urandom(DISK))
    disk[5 * WIN : 6 * WIN] = bytes(WIN)  # p1's window 3: used, but zeros
    outside = region("outside", 0, DISK, [(0, 2 * WIN), (DISK - WIN, WIN)])
    p1 = region("p1", 2 * WIN, 10 * WIN, [(0, WIN), (3 * WIN, WIN), (5 * WIN + 100, 900)])
    p2 = region("p2", 12 * WIN, 20 * WIN, [])
    return MemorySource(bytes(disk), [outside, p1, p2])


def expected(src: MemorySource) -> bytes:
    out = bytearray(DISK)
    for reg in src.regions:
        for start, size in reg.used:
            a = reg.start + start
            out[a : a + size] = src.disk[a : a + size]
    return bytes(out)


def test_pieces_come_in_disk_order_and_cover_the_used_bytes(source: MemorySource) -> None:
    got = list(pieces(source, workers=3))
    offsets = [offset for offset, _, _ in got]
    assert offsets == sorted(offsets)
    assert sum(length for _, length, _ in got) == sum(
        size for reg in source.regions for _, size in reg.used
    )
    assert [data for offset, _, data in got if offset == 5 * WIN] == [None]  # all zeros
    assert sorted(set(source.reads)) == sorted(source.reads), "a window was read twice"


def test_img_is_the_disk_and_sparse(source: MemorySource, tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    write_file(source, DISK, path, "img", workers=2)
    assert path.read_bytes() == expected(source)
    assert os.stat(path).st_blocks * 512 <= 5 * WIN  # outside 2 + 1, p1 1 + a block of 900 B


@pytest.mark.parametrize("zero_run", [rawfile.ZERO_RUN, 2 * WIN])
def test_zst_is_a_stream_of_the_disk(
    source: MemorySource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zero_run: int
) -> None:
    """Also with runs of zeros written as ready-made frames (p2's 20 empty windows)."""
    monkeypatch.setattr(rawfile, "ZERO_RUN", zero_run)
    path = tmp_path / "disk.img.zst"
    write_file(source, DISK, path, "zst", workers=2)
    with open(path, "rb") as handle:
        reader = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True)
        data = reader.read()
    assert data == expected(source)
    assert (path.read_bytes().count(b"\x28\xb5\x2f\xfd") > 5) == (zero_run == 2 * WIN)


def test_extra_bytes_land_at_their_offset(source: MemorySource, tmp_path: Path) -> None:
    header = b"SWAPSPACE2".rjust(BLOCK, b"\1")
    path = tmp_path / "disk.img"
    write_file(WithBytes(source, [(20 * WIN, header)]), DISK, path, "img")
    want = bytearray(expected(source))
    want[20 * WIN : 20 * WIN + len(header)] = header
    assert path.read_bytes() == bytes(want)


def test_a_cancelled_copy_stops(source: MemorySource, tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        write_file(source, DISK, tmp_path / "disk.img", "img", cancel=cancel)


@pytest.mark.parametrize(
    "name,kind",
    [("a.img", "img"), ("A.IMG", "img"), ("a.bin", "img"), ("a.img.zst", "zst"),
     ("a.qcow2", "qcow2"), ("a.vhd", "vpc"), ("a.VHDX", "vhdx"), ("a.vmdk", "vmdk"),
     ("a.vdi", "vdi")],
)  # fmt: skip
def test_file_kind_from_the_name(name: str, kind: str) -> None:
    assert file_kind(Path(name)) == kind


def test_an_unknown_name_is_one_sentence() -> None:
    with pytest.raises(UsageError, match=r"must end with one of \.img, \.img\.zst"):
        file_kind(Path("disk.iso"))

"""The read-only view's arithmetic and its window cache, on a source at the ImageSource seam
(small windows, so every edge is cheap to reach): reads across windows, unstored windows as
zeros, the short last window, reads past the end, a damaged window as EIO for the reads that
touch it only, and a cache bounded in bytes that loads a window once for many readers."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest

from appliance.errors import CorruptData
from appliance.io.imageview import PartitionView, WindowCache
from appliance.io.source import SourceRegion

WIN = 64 * 1024
SIZE = 5 * WIN + 1000  # six windows, the last one short


class Source:
    """Region 1 holds SIZE bytes; window 2 is not stored (None), `bad` windows are damaged."""

    proves = "chunk hashes"

    def __init__(self, bad: set[int] | None = None) -> None:
        self.data = bytearray(os.urandom(SIZE))
        self.data[2 * WIN : 3 * WIN] = bytes(WIN)
        self.bad = bad or set()
        self.reads: list[int] = []
        self.lock = threading.Lock()
        self.regions = [
            SourceRegion("outside", None, 0, WIN, None, (), "boot area", WIN),
            SourceRegion("p1", 1, WIN, SIZE, "ext4", ((0, SIZE),), "partition 1", WIN),
        ]

    def chunk(self, region: int, number: int) -> str | None:
        return None if number == 2 else f"chunk-{number}"

    def read_window(self, region: int, number: int) -> bytes | None:
        assert region == 1
        with self.lock:
            self.reads.append(number)
        if number in self.bad:
            raise CorruptData(f"Chunk chunk-{number} does not match its hash.")
        if number == 2:
            return None
        return bytes(self.data[number * WIN : (number + 1) * WIN])

    def window_hash(self, region: int, number: int) -> str | None:
        return None


def view(source: Source, **kwargs: int) -> PartitionView:
    return PartitionView(source, 1, **kwargs)


def read(v: PartitionView, offset: int, length: int) -> bytes:
    """What a reader gets (a read inside one window comes as a ctypes view of the cache)."""
    return bytes(v.read(offset, length))


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, 4096),
        (WIN - 100, 300),  # across windows 0 and 1
        (WIN + 5, 3 * WIN),  # windows 1, 2 (unstored), 3 and 4
        (2 * WIN + 10, 50),  # inside the unstored window
        (5 * WIN, 1000),  # the whole short last window
        (SIZE - 10, 4096),  # past the end: only what is there
        (0, SIZE),
    ],
)
def test_reads_return_the_regions_bytes(offset: int, length: int) -> None:
    source = Source()
    got = read(view(source, ahead=0), offset, length)
    assert got == bytes(source.data[offset : offset + length])


def test_reads_at_or_past_the_end_are_empty() -> None:
    v = view(Source(), ahead=0)
    assert v.size == SIZE
    assert read(v, SIZE, 10) == b""
    assert read(v, SIZE + WIN, 10) == b""


def test_an_unstored_window_is_zeros_without_asking_the_source() -> None:
    source = Source()
    assert read(view(source, ahead=0), 2 * WIN, WIN) == bytes(WIN)
    assert 2 not in source.reads


def test_a_damaged_window_fails_with_eio_and_the_others_still_read() -> None:
    source = Source(bad={3})
    v = view(source, ahead=0)
    with pytest.raises(OSError) as caught:
        read(v, 3 * WIN + 10, 100)
    assert caught.value.errno == errno.EIO
    with pytest.raises(OSError):  # a read that only touches it at one end fails too
        read(v, 3 * WIN - 10, 20)
    assert read(v, 4 * WIN, 100) == bytes(source.data[4 * WIN : 4 * WIN + 100])
    assert read(v, 0, WIN) == bytes(source.data[:WIN])
    with pytest.raises(OSError):  # not cached as good: asked again, failing again
        read(v, 3 * WIN, 1)
    assert source.reads.count(3) == 3


def test_a_sequential_reader_has_the_next_windows_fetched_ahead() -> None:
    source = Source()
    v = view(source, ahead=2)
    read(v, 0, 4096)
    deadline = time.monotonic() + 5
    while not (v.cache.cached(1) and 3 in source.reads) and time.monotonic() < deadline:
        time.sleep(0.01)  # window 2 is not stored: 1 and 3 are the next two stored
    assert {0, 1, 3} <= set(source.reads)
    v.close()


def test_the_cache_holds_at_most_its_budget_least_recently_used_out_first() -> None:
    loads: list[int] = []

    def load(number: int) -> bytes:
        loads.append(number)
        return bytes([number]) * 1000

    cache = WindowCache(load, budget=3000)
    for number in (0, 1, 2):
        cache.get(number)
    cache.get(0)  # 0 is now the most recently used
    cache.get(3)  # 1 goes
    assert cache.held <= 3000
    assert sorted(cache.windows) == [0, 2, 3]
    cache.get(1)
    assert loads == [0, 1, 2, 3, 1]
    assert cache.get(3) == bytes([3]) * 1000


def test_a_window_wanted_by_many_threads_at_once_is_loaded_once() -> None:
    started = threading.Event()
    release = threading.Event()
    loads: list[int] = []

    def load(number: int) -> bytes:
        loads.append(number)
        started.set()
        release.wait(5)
        return b"x" * 10

    cache = WindowCache(load)
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(7))) for _ in range(6)]
    for thread in threads:
        thread.start()
    started.wait(5)
    time.sleep(0.05)
    release.set()
    for thread in threads:
        thread.join(5)
    assert loads == [7]
    assert results == [b"x" * 10] * 6


def test_a_failed_load_reaches_every_waiter_and_is_not_kept() -> None:
    calls = [0]

    def load(number: int) -> bytes:
        calls[0] += 1
        raise OSError(errno.EIO, "damaged")

    cache = WindowCache(load)
    for _ in range(2):
        with pytest.raises(OSError):
            cache.get(1)
    assert calls[0] == 2
    assert not cache.windows and not cache.loading

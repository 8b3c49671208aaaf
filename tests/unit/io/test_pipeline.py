import os
import threading
import time

import pytest

from appliance.errors import Cancelled
from appliance.io import pipeline
from appliance.io.pipeline import (
    Placement,
    Window,
    fetched_in_order,
    read_windows,
    spans,
    split_at,
    zero_tail,
    zero_unused,
)
from appliance.progress import Progress


def test_spans_join_small_holes() -> None:
    assert spans([(0, 10), (20, 10), (10_000, 5)], gap=100) == [(0, 30), (10_000, 5)]


def test_zero_unused() -> None:
    buf = bytearray(b"x" * 16)
    zero_unused(memoryview(buf), [(2, 3), (8, 2)], 14)
    assert bytes(buf) == b"\0\0xxx\0\0\0xx\0\0\0\0xx"


def test_read_windows_from_a_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(3 * 4096)
    path = tmp_path / "disk"
    path.write_bytes(data)
    got: dict[int, bytes] = {}
    fd = os.open(path, os.O_RDONLY)
    try:
        wins = iter(
            [
                Window(0, 0, 0, 8192, ((0, 512), (4096, 4096))),
                Window(0, 1, 8192, 4096, ((0, 4096),)),
            ]
        )

        def work(win: Window, view: memoryview) -> None:
            got[win.number] = bytes(view)

        progress = Progress()
        read_windows(fd, wins, work, sector=512, progress=progress, workers=2)
    finally:
        os.close(fd)
    assert got[0] == data[:512] + bytes(3584) + data[4096:8192]
    assert got[1] == data[8192:]
    assert progress.done == 512 + 4096 + 4096


def test_errors_in_workers_reach_the_caller(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "disk"
    path.write_bytes(bytes(8192))
    fd = os.open(path, os.O_RDONLY)

    def work(win: Window, view: memoryview) -> None:
        raise ValueError("boom")

    try:
        with pytest.raises(ValueError, match="boom"):
            read_windows(
                fd,
                iter([Window(0, 0, 0, 4096, ((0, 4096),))]),
                work,
                sector=512,
                progress=Progress(),
                workers=2,
            )
    finally:
        os.close(fd)


def test_cancel_stops_the_pipeline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "disk"
    path.write_bytes(bytes(4096))
    fd = os.open(path, os.O_RDONLY)
    cancel = threading.Event()
    cancel.set()

    def many():  # type: ignore[no-untyped-def]
        while True:
            yield Window(0, 0, 0, 4096, ((0, 4096),))

    try:
        with pytest.raises(Cancelled):
            read_windows(
                fd,
                many(),
                lambda w, v: None,
                sector=512,
                progress=Progress(),
                cancel=cancel,
                workers=2,
            )
    finally:
        os.close(fd)


def _placements(count: int) -> list[Placement]:
    """Every third window all zeros (no chunk to fetch)."""
    return [
        Placement(0, n * 4096, 4096, ((0, 4096),), None if n % 3 == 2 else f"c{n}")
        for n in range(count)
    ]


def test_fetches_ahead_in_order_and_bounded() -> None:
    lock = threading.Lock()
    running = [0]
    most = [0]

    def fetch(name: str) -> bytes:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01 if int(name[1:]) % 2 else 0.03)  # answers arrive out of order
        with lock:
            running[0] -= 1
        return name.encode()

    places = _placements(30)
    got = list(fetched_in_order(iter(places), fetch, 4, threading.Event()))
    assert [p for p, _ in got] == places
    assert [blob for _, blob in got] == [(p.chunk or "").encode() for p in places]
    assert 1 < most[0] <= 4


def test_a_failed_fetch_reaches_the_reader() -> None:
    def fetch(name: str) -> bytes:
        if name == "c7":
            raise OSError("the server went away")
        return b"x"

    items = fetched_in_order(iter(_placements(30)), fetch, 4, threading.Event())
    with pytest.raises(OSError, match="went away"):
        list(items)


def test_zero_unused_clears_large_holes_and_keeps_the_used_bytes() -> None:
    """Holes of a 4 MiB window (as a save's reader leaves stale free-space bytes in them)
    come out zero; the used ranges keep their bytes."""
    size = 4 << 20
    data = os.urandom(size)
    buf = bytearray(data)
    used = [(4096, 8192), (1 << 20, 3 << 20)]
    zero_unused(memoryview(buf), used, size - 4096)  # the last 4 KiB: past the window
    for start, length in used:
        assert buf[start : start + length] == data[start : start + length]
    for start, end in [(0, 4096), (12288, 1 << 20)]:
        assert buf[start:end] == bytes(end - start)
    assert buf[size - 4096 :] == data[size - 4096 :]


def test_write_windows_zeroes_empty_windows_and_writes_the_rest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Windows stored as zeros are zeroed, windows with chunks decoded and written; the file
    ends as the placements say, whatever it held before."""
    win = 64 * 1024
    count = 150  # long stretches of zero windows, broken by data
    path = tmp_path / "target"
    path.write_bytes(b"\xee" * (win * count))  # stale bytes: every used byte must change
    data = {n: bytes([n % 251 + 1]) * win for n in range(count) if n % 70 in (3, 4, 69)}
    used = {0: ((0, win),), 1: ((100, 5000),)}
    places = [
        Placement(0, n * win, win, used[n % 2], f"c{n}" if n in data else None)
        for n in range(count)
    ]
    progress = Progress(None)
    fd = os.open(path, os.O_RDWR)
    try:

        def decode(place: Placement, blob: bytes | memoryview, out: memoryview) -> None:
            out[:] = blob

        fetch = lambda name: data[int(name[1:])]  # noqa: E731
        pipeline.write_windows(fd, iter(places), fetch, decode, progress=progress, workers=2)
    finally:
        os.close(fd)
    got = path.read_bytes()
    for place in places:
        n = place.offset // win
        for start, length in place.used:
            want = data[n][start : start + length] if n in data else bytes(length)
            assert got[place.offset + start : place.offset + start + length] == want, n
        if place.used == ((100, 5000),):  # the unused bytes are left alone
            assert got[place.offset : place.offset + 100] == b"\xee" * 100
    assert progress.done == sum(p.used_bytes for p in places)


def test_zero_tail_finds_where_the_last_zeros_begin_in_whole_steps() -> None:
    step, win = pipeline.ZERO_STEP, 4 << 20
    buf = bytearray(win)
    view = memoryview(buf)
    assert zero_tail(view, win) == 0  # all zeros
    buf[5000] = 1  # data in the first step only
    assert zero_tail(view, win) == step
    buf[3 * step + 7] = 2  # the step holding the last data byte is kept whole
    assert zero_tail(view, win) == 4 * step
    buf[win - 1] = 3  # data to the end: one compare, the whole window
    assert zero_tail(view, win) == win
    short = win - 100  # a window cut at the end of its region, not a whole step
    buf[win - 1] = 0
    buf[short - 1] = 4
    assert zero_tail(view, short) == short
    buf[short - 1] = 0
    assert zero_tail(view, short) == 4 * step


def test_split_at_cuts_the_range_across_the_point() -> None:
    used = [(0, 100), (200, 300), (600, 50)]
    assert split_at(used, 300) == ([(0, 100), (200, 100)], [(300, 200), (600, 50)])
    assert split_at(used, 200) == ([(0, 100)], [(200, 300), (600, 50)])
    assert split_at(used, 1000) == (used, [])
    assert split_at(used, 0) == ([], used)


def test_write_windows_zeroes_a_long_zero_tail_of_stale_bytes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A window whose decoded bytes end in zeros (a large ext4's bitmaps and inode-table
    heads, then known zeros) is written up to its tail and zeroed after it: the target
    reads the window exactly, stale bytes gone."""
    win = 4 << 20
    path = tmp_path / "target"
    path.write_bytes(b"\xee" * (3 * win))
    head = bytearray(win)
    head[: 3 * 4096] = b"\x11" * (3 * 4096)  # a short head
    mixed = bytearray(win)
    mixed[: win // 2] = b"\x22" * (win // 2)
    mixed[win - 70_000] = 0x33  # data near the end: the tail is too short to zero apart
    data = {"a": bytes(head), "b": bytes(mixed), "c": bytes(head)}
    places = [
        Placement(0, 0, win, ((0, win),), "a"),
        Placement(0, win, win, ((0, win),), "b"),
        Placement(0, 2 * win, win, ((0, 8192), (1 << 20, 2 << 20)), "c"),
    ]
    progress = Progress(None)
    fd = os.open(path, os.O_RDWR)
    try:

        def decode(place: Placement, blob: bytes | memoryview, out: memoryview) -> None:
            out[:] = blob

        pipeline.write_windows(
            fd, iter(places), data.__getitem__, decode, progress=progress, workers=2
        )
    finally:
        os.close(fd)
    got = path.read_bytes()
    assert got[:win] == data["a"]
    assert got[win : 2 * win] == data["b"]
    third = got[2 * win :]
    assert third[:8192] == data["c"][:8192]
    assert third[1 << 20 : 3 << 20] == bytes(2 << 20)  # used, in the zero tail: zeroed
    assert third[8192 : 1 << 20] == b"\xee" * ((1 << 20) - 8192)  # unused: left alone
    assert progress.done == sum(p.used_bytes for p in places)


def test_write_windows_reads_chunks_into_a_fixed_set_of_buffers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With `pooled`, chunks are read into pooled buffers handed back once decoded: many
    more chunks than buffers, four fetchers finishing out of order, every byte in place,
    and `fetch` never called."""
    win = 16 * 1024
    count = 120
    path = tmp_path / "target"
    path.write_bytes(bytes(win * count))
    data = {n: os.urandom(1000 + 37 * n) for n in range(count)}  # chunks of many lengths
    buffers: set[int] = set()
    lock = threading.Lock()

    def read(name: str, buf) -> int:  # type: ignore[no-untyped-def]
        n = int(name[1:])
        time.sleep(0.001 if n % 3 else 0.004)
        blob = data[n]
        buf[: len(blob)] = blob
        with lock:
            buffers.add(id(buf))
        return len(blob)

    def fetch(name: str) -> bytes:
        raise AssertionError("read into the pool, not fetched")

    def decode(place: Placement, blob: bytes | memoryview, out: memoryview) -> None:
        assert isinstance(blob, memoryview)
        out[: len(blob)] = blob
        out[len(blob) :] = bytes(len(out) - len(blob))

    places = [Placement(0, n * win, win, ((0, win),), f"c{n}") for n in range(count)]
    fd = os.open(path, os.O_RDWR)
    try:
        pipeline.write_windows(
            fd,
            iter(places),
            fetch,
            decode,
            progress=Progress(None),
            workers=2,
            fetchers=4,
            pooled=pipeline.PooledFetch(read, win),
        )
    finally:
        os.close(fd)
    got = path.read_bytes()
    for n in range(count):
        want = data[n] + bytes(win - len(data[n]))
        assert got[n * win : (n + 1) * win] == want, n
    assert 4 < len(buffers) <= 4 + 2 + 2 * 3  # the pool: reused, never grown

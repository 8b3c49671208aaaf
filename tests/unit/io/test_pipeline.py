import os
import threading

import pytest

from appliance.errors import Cancelled
from appliance.io.pipeline import Window, read_windows, spans, zero_unused
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

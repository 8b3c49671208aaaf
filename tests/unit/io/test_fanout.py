"""One reader, many writers: every sink gets every byte once, the hash is the stream's, a
slow sink holds the reader back instead of growing memory, a failing sink stops only itself,
and a failing reader stops everything."""

from __future__ import annotations

import io
import os
import threading
import time

import blake3
import pytest

from appliance.errors import CorruptData
from appliance.io.fanout import Block, fan_out
from appliance.io.windows import WINDOW
from appliance.progress import Progress

DATA = os.urandom(3 * WINDOW) + bytes(2 * WINDOW) + os.urandom(12345)


class Collect:
    def __init__(self, name: str, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.name = name
        self.delay = delay
        self.fail_at = fail_at
        self.data = bytearray()
        self.zero_blocks = 0
        self.done = 0

    def put(self, block: Block) -> None:
        if self.fail_at is not None and block.offset >= self.fail_at:
            raise OSError(5, "Input/output error")
        time.sleep(self.delay)
        assert block.offset == len(self.data)
        assert block.padded % 4096 == 0 and not any(block.view[block.length : block.padded])
        self.data += block.view[: block.length]
        self.zero_blocks += block.zero
        self.done += 1


def reader(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def test_every_sink_gets_every_byte_and_the_hash() -> None:
    sinks = [Collect("a"), Collect("b"), Collect("c")]
    stream = reader(DATA)
    cut = 2 * WINDOW + 100
    result = fan_out(stream.readinto, list(sinks), progress=Progress(), cuts=[cut, len(DATA)])
    assert result.size == len(DATA) and not result.errors
    assert result.digest == blake3.blake3(DATA).hexdigest()
    assert result.prefixes[cut] == blake3.blake3(DATA[:cut]).hexdigest()
    for sink in sinks:
        assert bytes(sink.data) == DATA
        assert sink.zero_blocks == 2


def test_a_slow_sink_holds_the_reader_back() -> None:
    """Memory stays bounded: the reader is never more than the pool ahead of the slowest."""
    slow, fast = Collect("slow", delay=0.01), Collect("fast")
    depth = 2
    data = os.urandom(40 * 4096) * (30 * WINDOW // (40 * 4096))
    stream = io.BytesIO(data)
    lead: list[int] = []

    def read(view: memoryview) -> int:
        lead.append(stream.tell() // WINDOW - slow.done)
        return stream.readinto(view)

    result = fan_out(read, [slow, fast], progress=Progress(), depth=depth)
    assert bytes(slow.data) == data and bytes(fast.data) == data
    pool = 2 * depth + 2
    assert max(lead) <= pool, max(lead)
    assert result.size == len(data)


def test_a_failing_sink_stops_only_itself() -> None:
    bad, good = Collect("bad", fail_at=WINDOW), Collect("good")
    result = fan_out(io.BytesIO(DATA).readinto, [bad, good], progress=Progress(), depth=1)
    assert set(result.errors) == {"bad"} and isinstance(result.errors["bad"], OSError)
    assert bytes(good.data) == DATA and len(bad.data) == WINDOW


def test_a_failing_reader_stops_everything() -> None:
    stream = io.BytesIO(DATA)

    def read(view: memoryview) -> int:
        if stream.tell() >= 2 * WINDOW:
            raise CorruptData("The xz stream of the image file x.img.xz is damaged.")
        return stream.readinto(view)

    sinks = [Collect("a"), Collect("b")]
    with pytest.raises(CorruptData, match="damaged"):
        fan_out(read, list(sinks), progress=Progress())
    assert all(len(s.data) <= 2 * WINDOW for s in sinks)


def test_cancel_stops_the_copy() -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Exception, match="Stopped by the user"):
        fan_out(io.BytesIO(DATA).readinto, [Collect("a")], progress=Progress(), cancel=cancel)

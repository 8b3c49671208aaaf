"""One reader, many writers: a stream read once and handed to every target at its own pace.

The reader fills page-aligned 4 MiB buffers from a pool, hashes the bytes (blake3) as it
reads them, notes whether a buffer holds only zeros, and puts it on a bounded queue per
sink. Each sink has its own thread; a buffer goes back to the pool when every sink is done
with it. The pool and the queues bound memory: a slow target makes the reader wait, it
never makes memory grow.

A sink that fails (an unplugged stick, an I/O error) is recorded and stops writing; it
still drains its queue, so the others go on. A reader that fails (a damaged stream) stops
everything and its error is raised in the caller's thread.
"""

from __future__ import annotations

import mmap
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import blake3

from appliance.disk.blockio import aligned_buffer
from appliance.io.pipeline import Stage
from appliance.io.windows import WINDOW
from appliance.progress import Progress

PAGE = 4096
_ZERO = bytes(WINDOW)


@dataclass
class Block:
    """`length` bytes of the stream at `offset`, zero-padded in `view` to a whole page."""

    offset: int
    length: int
    view: memoryview
    zero: bool
    buf: mmap.mmap = field(repr=False)
    refs: int = 0

    @property
    def padded(self) -> int:
        return min(len(self.view), -(-self.length // PAGE) * PAGE)


class Sink(Protocol):
    """A target: `put` writes one block (in stream order); an exception fails only it."""

    name: str

    def put(self, block: Block) -> None: ...


@dataclass
class FanResult:
    size: int  # bytes the stream held
    digest: str  # blake3 of all of them, hex
    prefixes: dict[int, str]  # blake3 of the first N bytes, for each N asked for
    errors: dict[str, BaseException]  # sink name -> what stopped it


def fan_out(
    read: Callable[[memoryview], int],
    sinks: list[Sink],
    *,
    progress: Progress,
    cancel: threading.Event | None = None,
    cuts: Iterable[int] = (),
    depth: int = 4,
) -> FanResult:
    """Read the stream with `read` (fills a view, 0 at the end) and give every block to
    every sink. `cuts`: lengths whose prefix hash is wanted (targets shorter than the file)."""
    stage = Stage(progress, cancel)
    free: queue.Queue[mmap.mmap | None] = queue.Queue()
    for _ in range(len(sinks) * depth + 2):
        free.put(aligned_buffer(WINDOW))
    queues: dict[str, queue.Queue[Block | None]] = {
        sink.name: queue.Queue(maxsize=depth) for sink in sinks
    }
    errors: dict[str, BaseException] = {}
    lock = threading.Lock()
    hasher = blake3.blake3()
    prefixes: dict[int, str] = {}
    pending = sorted(set(cuts))
    total = [0]

    def release(block: Block) -> None:
        with lock:
            block.refs -= 1
            last = block.refs == 0
        if last:
            free.put(block.buf)

    def hash_block(offset: int, view: memoryview) -> None:
        pos = 0
        while pending and pending[0] <= offset + len(view):
            cut = pending.pop(0) - offset
            hasher.update(view[pos:cut])
            prefixes[offset + cut] = hasher.copy().hexdigest()
            pos = cut
        hasher.update(view[pos:])

    def reader() -> None:
        offset = 0
        while True:
            buf = stage.get(free)
            if buf is None:
                return
            view = memoryview(buf)
            got = read(view)
            if not got:
                free.put(buf)
                break
            pad = min(WINDOW, -(-got // PAGE) * PAGE)
            view[got:pad] = _ZERO[: pad - got]
            hash_block(offset, view[:got])
            zero = view[:got].tobytes() == _ZERO[:got]  # memcmp: faster than a view compare
            block = Block(offset, got, view, zero, buf, len(sinks))
            for sink in sinks:
                if not stage.put(queues[sink.name], block):
                    return
            offset += got
            progress.add(got)
        total[0] = offset
        for sink in sinks:
            stage.put(queues[sink.name], None)

    def writer(sink: Sink) -> Callable[[], None]:
        def body() -> None:
            while True:
                block = stage.get(queues[sink.name])
                if block is None:
                    return
                try:
                    if sink.name not in errors:
                        sink.put(block)
                except Exception as exc:  # this target only: the others go on
                    errors[sink.name] = exc
                finally:
                    release(block)

        return body

    stage.spawn("read", reader)
    for sink in sinks:
        stage.spawn(f"write-{sink.name}", writer(sink))
    stage.wait()
    return FanResult(total[0], hasher.hexdigest(), prefixes, errors)

"""The byte pipelines: one reader, a pool of workers (one per core), bounded queues.

`read_windows` reads the used ranges of each 4 MiB window of a disk with O_DIRECT into a
pooled, page-aligned buffer, zeroes the bytes that are not used, and hands the window to a
worker function on the pool (hash, compress, compare...). The pool of buffers bounds memory.

`write_windows` is the reverse: a reader fetches stored chunks, the pool decodes and checks
them into aligned buffers, and two writers put the used ranges on the target with O_DIRECT.

Errors in any thread stop all threads and are raised in the caller's thread.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

from appliance.disk.blockio import aligned_buffer, read_into, write_from, zero_range
from appliance.errors import Cancelled
from appliance.io.windows import WINDOW, Window
from appliance.progress import Progress

READ_GAP = 256 * 1024  # read through holes smaller than this instead of seeking
ZERO_STEP = 64 * 1024  # a decoded window's zero tail is found (and zeroed) in steps of this
ZERO_TAIL = 1 << 20  # a zero tail shorter than this is written like the rest
# Writes in flight at once: with one, the target waited between each 4 MiB write and the
# next; two took bench-disk restores from 2.25 to 2.09 s (medians of five interleaved pairs),
# three no further. Windows never overlap, so their order on the target does not matter.
WRITERS = 2
# Reads in flight at once on a source disk: with one, a save whose compression keeps up (a
# home disk of photos and archives) waited on each 4 MiB read in turn; two took that disk's
# save from 4.96 to 4.0 s (medians of four interleaved pairs), and left the bench disk's
# (bound by compression) as it was. The two read neighbouring windows, so a spinning disk
# still reads front to back.
READERS = 2
# Threads a job that stores chunks (save, import) adds to its pool beyond one per core: its
# threads also wait on the repository's disk, reading a reused chunk back to prove it and
# writing a new one with O_DIRECT, and with one thread per core the cores idled through
# those waits. Medians of interleaved rounds, the bench's disks: the incremental save of the
# 8 GiB disk (97 % of it read back) took 5.45 s with none, 4.59 s with two more and 4.24 s
# with four; the home disk of photos 4.30 s with none and 3.85 s with four; the save bound by
# compression stayed where it was. Each thread holds about 18 MiB (its window, compressor
# and chunk buffers): with four, an encrypted save peaked at 286 MiB of `make bench`'s 300,
# and a second run of four against two gave the same times (4.77 and 4.81 s).
STORE_WAITS = 2
TICK = 0.05  # seconds between progress ticks while a pipeline runs
_ZERO = bytes(WINDOW)
T = TypeVar("T")
B = TypeVar("B")  # a fetched chunk: its own bytes, or a view of a pooled buffer
__all__ = [  # Window and WINDOW are io.windows': the pipelines' callers get them here too
    "WINDOW",
    "Placement",
    "PooledFetch",
    "Stage",
    "Window",
    "read_windows",
    "run_windows",
    "spans",
    "store_workers_default",
    "workers_default",
    "write_windows",
    "zero_unused",
]


def spans(used: Iterable[tuple[int, int]], gap: int = READ_GAP) -> list[tuple[int, int]]:
    """Used ranges joined across holes smaller than `gap`: fewer, larger I/Os."""
    out: list[tuple[int, int]] = []
    for start, length in used:
        if out and start - (out[-1][0] + out[-1][1]) < gap:
            out[-1] = (out[-1][0], start + length - out[-1][0])
        else:
            out.append((start, length))
    return out


def zero_unused(view: memoryview, used: Iterable[tuple[int, int]], length: int) -> None:
    """Zero every byte of `view[:length]` outside `used`: read from /dev/zero, so the kernel
    clears them while other threads run (slice assignment held the GIL: 0.35 s of a save)."""
    holes: list[memoryview] = []
    pos = 0
    for start, size in used:
        if start > pos:
            holes.append(view[pos:start])
        pos = start + size
    if pos < length:
        holes.append(view[pos:length])
    while holes:
        got = os.readv(_dev_zero(), holes)
        while holes and got >= len(holes[0]):
            got -= len(holes.pop(0))
        if got and holes:
            holes[0] = holes[0][got:]


@cache
def _dev_zero() -> int:
    return os.open("/dev/zero", os.O_RDONLY | os.O_CLOEXEC)


def workers_default() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def store_workers_default() -> int:
    """The pool of a job that stores chunks: a thread per core and STORE_WAITS more."""
    return workers_default() + STORE_WAITS


class Stage:
    """Threads that share a stop flag and the first error any of them raised."""

    def __init__(self, progress: Progress, cancel: threading.Event | None) -> None:
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def spawn(self, name: str, target: Callable[[], None]) -> None:
        def body() -> None:
            try:
                target()
            except BaseException as exc:  # handed to the caller's thread, re-raised there
                with self._lock:
                    if self.error is None:
                        self.error = exc
                self.stop.set()

        thread = threading.Thread(target=body, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def put(self, q: queue.Queue[T], item: T) -> bool:
        """Put unless stopping; False when the pipeline is stopping."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q: queue.Queue[T | None]) -> T | None:
        """The next item; None at the end of the stream or when the pipeline is stopping."""
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def wait(self) -> None:
        """Join every thread, ticking progress; raise the first error or Cancelled. Each
        thread is joined for up to TICK at a time, so the wait ends the moment the last one
        does (sleeping TICK between looks cost up to that much at the end of every pipeline,
        and a restore runs one for each partition)."""
        try:
            for thread in self.threads:
                while thread.is_alive():
                    if self.cancel.is_set():
                        self.stop.set()
                    self.progress.tick()
                    thread.join(TICK)
        except KeyboardInterrupt:
            self.stop.set()
            for thread in self.threads:
                thread.join()
            raise Cancelled("Stopped by the user.") from None
        for thread in self.threads:
            thread.join()
        if self.error is not None:
            raise self.error
        if self.cancel.is_set():
            raise Cancelled("Stopped by the user.")


def read_windows(
    fd: int,
    windows: Iterator[Window],
    work: Callable[[Window, memoryview], None],
    *,
    sector: int,
    progress: Progress,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    bad: list[tuple[int, int]] | None = None,
) -> None:
    """Read every window's used bytes from `fd` and run `work` on each, in parallel."""
    bad_ranges = bad if bad is not None else []

    def fill(win: Window, view: memoryview) -> None:
        for start, length in spans(win.used):
            read_into(fd, view[start : start + length], win.offset + start, sector, bad_ranges)
        zero_unused(view, win.used, win.length)

    run_windows(
        windows, fill, work, progress=progress, cancel=cancel, workers=workers, readers=READERS
    )
    bad_ranges.sort()  # the readers add what they could not read in any order


def run_windows(
    windows: Iterator[Window],
    fill: Callable[[Window, memoryview], None],
    work: Callable[[Window, memoryview], None],
    *,
    progress: Progress,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    readers: int = 1,
) -> None:
    """`fill` each window's buffer in `readers` threads taking the windows in order (one
    for a stream that can only be read front to back) and run `work` on the pool; buffers
    are pooled and aligned."""
    nworkers = workers or workers_default()
    stage = Stage(progress, cancel)
    free: queue.Queue[mmap.mmap | None] = queue.Queue()
    # a buffer for each worker's window, each reader's and two filled ahead: a buffer per
    # thread more (the old count) held 20 MiB more with STORE_WAITS and gained nothing
    for _ in range(nworkers + readers + 2):
        free.put(aligned_buffer(WINDOW))
    full: queue.Queue[tuple[Window, mmap.mmap] | None] = queue.Queue(maxsize=nworkers * 2)

    taking = threading.Lock()  # guards the windows' iterator and the count of readers left
    left = [readers]

    def reader() -> None:
        while True:
            with taking:
                win = next(windows, None)
            if win is None:
                break
            buf = stage.get(free)
            if buf is None:
                return
            fill(win, memoryview(buf)[: win.length])
            if not stage.put(full, (win, buf)):
                return
        with taking:
            left[0] -= 1
            last = left[0] == 0
        if last:  # the workers stop once every reader is done
            for _ in range(nworkers):
                stage.put(full, None)

    def worker() -> None:
        while True:
            item = stage.get(full)
            if item is None:
                return
            win, buf = item
            work(win, memoryview(buf)[: win.length])
            progress.add(win.used_bytes)
            free.put(buf)

    for number in range(readers):
        stage.spawn(f"reader-{number}", reader)
    for number in range(nworkers):
        stage.spawn(f"worker-{number}", worker)
    stage.wait()


@dataclass(frozen=True)
class PooledFetch:
    """A source's chunks read into buffers of `size` bytes that the restore pipeline pools,
    instead of a new object per chunk: `read(name, buffer)` fills one and says how many
    bytes it holds. Restores of the bench disk from a repository in memory, ten interleaved
    pairs: 2.265 against 2.415 s (9 faster), CPU 3.15 against 3.45 s, peak RSS 101-102
    against 109-127 MiB (glibc kept the freed chunk objects)."""

    read: Callable[[str, mmap.mmap], int]
    size: int


@dataclass(frozen=True)
class Placement:
    """One window to put on the target: its chunk (None: the window is all zeros)."""

    region: int
    offset: int  # disk offset of the window on the target
    length: int
    used: tuple[tuple[int, int], ...]  # ranges to write, relative to the window
    chunk: str | None

    @property
    def used_bytes(self) -> int:
        return sum(length for _, length in self.used)


def zero_tail(view: memoryview, length: int) -> int:
    """Where the zeros that end `view[:length]` begin, in whole ZERO_STEPs (`length` when
    its last step holds data: one compare for a window of data). A restore zeroes a long
    zero tail on the target (BLKZEROOUT) instead of writing it: the windows of a large
    ext4's group metadata are a few bitmaps and inode-table heads, then megabytes of
    known zeros."""
    end = length - length % ZERO_STEP
    if end < length and view[end:length].tobytes() != _ZERO[: length - end]:
        return length
    while end > 0 and view[end - ZERO_STEP : end].tobytes() == _ZERO[:ZERO_STEP]:
        end -= ZERO_STEP
    return end


def split_at(
    used: Iterable[tuple[int, int]], at: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The ranges of `used` below `at` and from `at` on (a range across it is cut in two)."""
    below: list[tuple[int, int]] = []
    above: list[tuple[int, int]] = []
    for start, length in used:
        if start + length <= at:
            below.append((start, length))
        elif start >= at:
            above.append((start, length))
        else:
            below.append((start, at - start))
            above.append((at, start + length - at))
    return below, above


def fetched_in_order(
    placements: Iterator[Placement],
    fetch: Callable[[str], B],
    fetchers: int,
    stop: threading.Event,
) -> Generator[tuple[Placement, B | bytes]]:
    """Each placement with its chunk's bytes, in order; with `fetchers` > 1 that many
    chunks are fetched at once ahead of the caller (a web server answers each request
    after a delay: one at a time cannot fill the link), never more."""
    if fetchers <= 1:
        for place in placements:
            yield place, fetch(place.chunk) if place.chunk is not None else b""
        return
    pool = ThreadPoolExecutor(fetchers, thread_name_prefix="fetch")
    ahead: deque[tuple[Placement, Future[B] | None]] = deque()
    try:
        for place in placements:
            ahead.append((place, None if place.chunk is None else pool.submit(fetch, place.chunk)))
            while len(ahead) > fetchers or (ahead and ahead[0][1] is None):
                first, future = ahead.popleft()
                yield first, b"" if future is None else future.result()
        while ahead and not stop.is_set():
            first, future = ahead.popleft()
            yield first, b"" if future is None else future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def write_windows(
    fd: int,
    placements: Iterator[Placement],
    fetch: Callable[[str], bytes],
    decode: Callable[[Placement, bytes | memoryview, memoryview], None],
    *,
    progress: Progress,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    fetchers: int = 1,
    pooled: PooledFetch | None = None,
) -> None:
    """Fetch, decode (and check) and write every placement's used bytes to `fd`; `fetchers`
    chunks are fetched at once (see fetched_in_order), with `pooled` into pooled buffers
    when the source can. `decode(place, blob, out)` puts the window's bytes into `out`, an
    aligned write buffer of the window's size, itself."""
    nworkers = workers or workers_default()
    stage = Stage(progress, cancel)
    free: queue.Queue[mmap.mmap | None] = queue.Queue()
    for _ in range(nworkers * 2 + 2):
        free.put(aligned_buffer(WINDOW))
    fetched: queue.Queue[tuple[Placement, bytes | memoryview] | None] = queue.Queue(
        maxsize=nworkers * 2
    )
    blobs: queue.Queue[mmap.mmap | None] = queue.Queue()
    fetch_one: Callable[[str], bytes | memoryview] = fetch
    if pooled is not None:
        # One for every chunk that can be held at once: fetching or fetched ahead
        # (fetchers + 1), in the reader's hand, queued for the decoders, being decoded. So
        # a fetch never waits for a buffer, in whatever order the fetchers take them.
        for _ in range(fetchers + 2 + nworkers * 3):
            blobs.put(aligned_buffer(pooled.size))

        def fetch_pooled(name: str) -> memoryview:
            buf = stage.get(blobs)
            if buf is None:  # stopping: nothing will take this chunk
                return memoryview(b"")
            try:
                got = pooled.read(name, buf)
            except BaseException:
                blobs.put(buf)
                raise
            return memoryview(buf)[:got]

        fetch_one = fetch_pooled
    decoded: queue.Queue[tuple[Placement, mmap.mmap | None, int] | None] = queue.Queue(
        maxsize=nworkers * 2
    )
    zeros = memoryview(aligned_buffer(WINDOW))
    finished_workers = [0]
    count_lock = threading.Lock()

    def reader() -> None:
        with contextlib.closing(
            fetched_in_order(placements, fetch_one, fetchers, stage.stop)
        ) as items:
            for item in items:
                if not stage.put(fetched, item):
                    return
        for _ in range(nworkers):
            stage.put(fetched, None)

    def worker() -> None:
        while True:
            item = stage.get(fetched)
            if item is None:
                break
            place, blob = item
            if place.chunk is None:
                if not stage.put(decoded, (place, None, 0)):
                    return
                continue
            buf = stage.get(free)
            if buf is None:
                return
            try:
                with memoryview(buf) as view, view[: place.length] as out:
                    decode(place, blob, out)
                    tail = zero_tail(out, place.length)
            except BaseException:
                free.put(buf)
                raise
            if pooled is not None and isinstance(blob, memoryview):
                held = blob.obj
                if isinstance(held, mmap.mmap):
                    blobs.put(held)  # decoded: its buffer is free for the next fetch
            if place.length - tail < ZERO_TAIL:
                tail = place.length
            if not stage.put(decoded, (place, buf, tail)):
                return
        with count_lock:
            finished_workers[0] += 1
            if finished_workers[0] == nworkers:
                for _ in range(WRITERS):
                    stage.put(decoded, None)

    def writer() -> None:
        while True:
            item = stage.get(decoded)
            if item is None:
                return
            place, buf, tail = item
            if buf is None:
                for start, length in place.used:
                    zero_range(fd, place.offset + start, length, zeros)
            else:
                view = memoryview(buf)
                data, zeroed = split_at(place.used, tail)
                for start, length in spans(data):
                    write_from(fd, view[start : start + length], place.offset + start)
                for start, length in spans(zeroed):
                    zero_range(fd, place.offset + start, length, zeros)
                free.put(buf)
            progress.add(place.used_bytes)

    stage.spawn("fetch", reader)
    for number in range(nworkers):
        stage.spawn(f"decode-{number}", worker)
    for number in range(WRITERS):
        stage.spawn(f"writer-{number}", writer)
    stage.wait()

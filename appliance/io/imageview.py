"""A read-only view: one partition of a saved image as a file, read on demand.

    python -m appliance.io.imageview --mount DIR --repo LOCATION --image NAME --partition N
        [--cache MIB] [--parent PID]

serves DIR/partition (io/fuseserve.py), a file of the partition's size whose bytes come
from the image's chunks as they are asked for: each window is fetched through the store
(folder, web server, bucket, mounted share), decoded and checked against its name
(`RepositorySource.read_window`), and kept in a cache of bounded size (least recently used
out first). A window the image does not store reads as zeros. A chunk that fails its check
makes every read touching it fail with EIO (never wrong bytes); the others read on.

Reads run on several threads (libfuse3's), with direct I/O: the kernel keeps no second copy
of the partition (the loop device and the filesystem on it cache what they read), and each
reply is copied once, into the reader's buffer. The next windows of a sequential reader are
fetched ahead on four threads, so decoding overlaps the reader's own work.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import logging
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from appliance.errors import ApplianceError
from appliance.io.fuseserve import serve, unmount_with_parent
from appliance.io.source import ImageSource

log = logging.getLogger(__name__)

NAME = "partition"
CACHE_BYTES = 256 << 20
AHEAD = 4  # windows fetched ahead of a sequential reader (measured: 2 left the cores idle)


class WindowCache:
    """Decoded windows by number, at most `budget` bytes of them, least recently used out
    first. Thread-safe: a window asked for by several threads at once is loaded once, and a
    load that fails is not kept (the next read tries again and fails again, or succeeds)."""

    def __init__(self, load: Callable[[int], bytes], budget: int = CACHE_BYTES) -> None:
        self.load = load
        self.budget = budget
        self.held = 0
        self.windows: OrderedDict[int, bytes] = OrderedDict()
        self.loading: dict[int, Future[bytes]] = {}
        self.lock = threading.Lock()
        self.loads = 0  # how many windows were loaded (for tests and figures)

    def cached(self, number: int) -> bool:
        with self.lock:
            return number in self.windows or number in self.loading

    def get(self, number: int) -> bytes:
        with self.lock:
            data = self.windows.get(number)
            if data is not None:
                self.windows.move_to_end(number)
                return data
            pending = self.loading.get(number)
            mine = pending is None
            if pending is None:
                pending = self.loading[number] = Future()
        if not mine:
            return pending.result()
        try:
            data = self.load(number)
        except BaseException as exc:
            with self.lock:
                del self.loading[number]
            pending.set_exception(exc)
            raise
        with self.lock:
            del self.loading[number]
            self.loads += 1
            self.windows[number] = data
            self.held += len(data)
            while self.held > self.budget and len(self.windows) > 1:
                _, gone = self.windows.popitem(last=False)
                self.held -= len(gone)
        pending.set_result(data)
        return data


class Pinned:
    """`size` bytes of `data` from `offset`, handed to libfuse as a pointer (ctypes takes
    `_as_parameter_`), without a copy; it holds `data`, so a window evicted from the cache
    meanwhile stays alive until libfuse has copied it."""

    __slots__ = ("_as_parameter_", "data", "offset", "size")

    def __init__(self, data: bytes, offset: int, size: int) -> None:
        if offset < 0 or offset + size > len(data):
            raise ValueError("a pinned range must lie inside its bytes")
        self.data, self.offset, self.size = data, offset, size
        start = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0
        self._as_parameter_ = ctypes.c_void_p(start + offset)

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return self.data[self.offset : self.offset + self.size]


def keep_freed_memory() -> None:
    """Let glibc keep the large buffers this process frees (libfuse's 1 MiB reply buffer
    of every read, each decoded 4 MiB window) for the next ones, instead of unmapping them
    and taking fresh zeroed pages from the kernel each time: page faults and page clearing
    were a fifth of the view's CPU time."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD: heap, not mmap, below 64 MiB
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: keep up to 256 MiB free in the heap


class PartitionView:
    """Region `region` of `source` as a read-only file of its size."""

    def __init__(
        self, source: ImageSource, region: int, *, budget: int = CACHE_BYTES, ahead: int = AHEAD
    ) -> None:
        self.source = source
        self.region = region
        found = source.regions[region]
        self.size = found.size
        self.window = found.window
        self.cache = WindowCache(self._load, budget)
        self.zeros = bytes(self.window)  # what every unstored window reads as
        self.ahead = ahead
        self.pool = ThreadPoolExecutor(ahead, "ahead") if ahead else None
        self.stored = {
            number for number in range(-(-self.size // self.window)) if self._stored(number)
        }

    def _stored(self, number: int) -> bool:
        chunk = getattr(self.source, "chunk", None)  # RepositorySource: its index says
        return chunk is None or chunk(self.region, number) is not None

    def _load(self, number: int) -> bytes:
        try:
            data = self.source.read_window(self.region, number)
        except ApplianceError as exc:  # a damaged or missing chunk: EIO for its reads
            log.warning("window %d of the view cannot be read: %s", number, exc)
            raise OSError(errno.EIO, str(exc)) from exc
        if data is None:
            return bytes(self.source.regions[self.region].length(number))
        return data

    def _read_ahead(self, number: int) -> None:
        if self.pool is None:
            return
        wanted = 0
        for later in range(number + 1, number + 1 + 4 * self.ahead):  # past unstored ones
            if later not in self.stored:
                continue
            if not self.cache.cached(later):
                self.pool.submit(self._quiet_get, later)
            wanted += 1
            if wanted == self.ahead:
                break

    def _quiet_get(self, number: int) -> None:
        with contextlib.suppress(OSError):  # the reader that needs it gets the error itself
            self.cache.get(number)

    def read(self, offset: int, length: int) -> bytes | Pinned:
        """Bytes at `offset`: fewer at the end of the file; OSError(EIO) when a window it
        touches cannot be read whole and proven. A read inside one window is handed out as
        a pointer into the cached window (FUSE copies it once, straight to the kernel's
        buffer)."""
        end = min(offset + max(length, 0), self.size)
        if offset >= end:
            return b""
        win = self.window
        parts: list[bytes | memoryview] = []
        pos = offset
        while pos < end:
            number, within = divmod(pos, win)
            take = min(end - pos, win - within)
            if number in self.stored:
                data = self.cache.get(number)
                if within == 0 or within + take == len(data):
                    self._read_ahead(number)
                if take == end - offset:  # the whole read, from one window
                    return Pinned(data, within, take)
                parts.append(memoryview(data)[within : within + take])
            elif take == end - offset:  # inside an unstored window: zeros, shared
                return Pinned(self.zeros, 0, take)
            else:
                parts.append(memoryview(self.zeros)[:take])
            pos += take
        return b"".join(parts)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def open_view(
    repo: str, image: str, partition: int, budget: int, ahead: int = AHEAD
) -> PartitionView:
    """The view of partition `partition` of image `image` in the repository at `repo`."""
    from appliance.io.source import RepositorySource
    from appliance.repo.image import load_image
    from appliance.repo.repository import Repository

    source = RepositorySource.from_image(load_image(Repository.open(repo), image))
    numbers = [r.partition for r in source.regions]
    ahead = max(ahead, source.fetchers)  # a web server or bucket: as many as a restore asks
    return PartitionView(source, numbers.index(partition), budget=budget, ahead=ahead)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="appliance.io.imageview", allow_abbrev=False)
    parser.add_argument("--mount", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--partition", type=int, required=True)
    parser.add_argument("--cache", type=int, default=CACHE_BYTES >> 20, help="MiB")
    parser.add_argument("--parent", type=int, help="the job's pid: unmount when it is gone")
    parser.add_argument("--ahead", type=int, default=AHEAD, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    keep_freed_memory()
    if args.parent:
        unmount_with_parent(args.parent, args.mount)
    try:
        view = open_view(args.repo, args.image, args.partition, args.cache << 20, args.ahead)
    except ApplianceError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    serve(
        lambda name: view if name == NAME else None,
        lambda: [NAME],
        args.mount,
        fsname="appliance-image",
        direct_io=True,
    )
    view.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

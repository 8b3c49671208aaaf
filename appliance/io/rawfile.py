"""An image source written out as one file that holds the whole disk: what `export` makes of
an image and `save --to` makes of a disk.

The file's kind comes from its name:

- `.img` (`.raw`, `.bin`): the raw disk, sparse: all-zero blocks are holes, never written;
- `.img.zst` (`.zst`): the raw disk as a zstd stream (zeros and all; they cost nothing);
- `.qcow2` `.vhdx` `.vhd` `.vmdk` `.vdi`: a VM disk, made empty by `qemu-img create`, then
  written like an `.img` through its raw view (shelf.vmdisk); zeros allocate nothing.

The source's used byte ranges are read window by window on a pool of threads (a chunk is
decoded and hash-checked there), and written in disk order by one writer; everything outside
them reads as zeros in the file. A VM disk is written through its view rather than converted
from a raw file: no full-size temporary file, and unused space is never read or written.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import zstandard

from appliance.errors import Cancelled, ToolFailed, UsageError
from appliance.io.pipeline import workers_default
from appliance.io.source import ImageSource, SourceRegion
from appliance.progress import Progress
from appliance.shelf import vmdisk

BLOCK = 64 * 1024  # all-zero blocks of this size are holes in a sparse file
FEED = 4 * 1024 * 1024  # zeros fed to the zstd stream at a time
ZERO_RUN = 64 * 1024 * 1024  # zeros written as one ready-made zstd frame
_ZEROS = bytes(FEED)
RAW_SUFFIXES = (".img", ".raw", ".bin")


def file_kind(path: Path) -> str:
    """ "img", "zst", or qemu's name of a VM format, from the file's name."""
    name = path.name.lower()
    if name.endswith(".zst"):
        return "zst"
    if name.endswith(RAW_SUFFIXES):
        return "img"
    fmt = vmdisk.vm_format(path)
    if fmt is None:
        known = ", ".join([".img", ".img.zst", *sorted(vmdisk.FORMATS)])
        raise UsageError(f"The file name {path.name} must end with one of {known}.")
    return fmt


def describe_kind(kind: str) -> str:
    if kind == "img":
        return "a raw disk file (sparse)"
    if kind == "zst":
        return "a zstd-compressed raw disk file"
    return f"a {vmdisk.NAMES.get(kind, kind)} VM disk"


def pieces(
    source: ImageSource,
    *,
    workers: int | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[tuple[int, int, bytes | None]]:
    """Every used byte range of the source in disk order: (disk offset, length, its bytes or
    None when they are all zeros). Windows are read ahead on a pool of threads."""
    items: list[tuple[int, int, int, int, int]] = []  # offset, region, window, lo, hi
    for number, region in enumerate(source.regions):
        for win in region.windows(number):
            for start, length in win.used:
                items.append((win.offset + start, number, win.number, start, start + length))
    items.sort()
    order: list[tuple[int, int]] = []
    remaining: Counter[tuple[int, int]] = Counter()
    for _, number, window, _, _ in items:
        if (number, window) not in remaining:
            order.append((number, window))
        remaining[(number, window)] += 1
    nworkers = workers or workers_default()
    ahead = nworkers * 2
    futures: dict[tuple[int, int], Future[bytes | None]] = {}
    submitted = 0
    with ThreadPoolExecutor(nworkers, thread_name_prefix="rawfile") as pool:
        try:
            for offset, number, window, lo, hi in items:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("Stopped by the user.")
                key = (number, window)
                while submitted < len(order) and (
                    key not in futures or len(futures) < ahead
                ):  # the window needed now, then read ahead
                    nxt = order[submitted]
                    futures[nxt] = pool.submit(source.read_window, *nxt)
                    submitted += 1
                data = futures[key].result()
                remaining[key] -= 1
                if not remaining[key]:
                    del futures[key]
                yield offset, hi - lo, None if data is None else data[lo:hi]
        finally:
            for future in futures.values():
                future.cancel()


class WithBytes:
    """A source plus some bytes of our own at given disk offsets (a swap header that the
    image does not store), each as one more region of one window."""

    def __init__(self, inner: ImageSource, extra: list[tuple[int, bytes]]) -> None:
        self.inner = inner
        self.extra = [data for _, data in extra]
        self._regions = list(inner.regions) + [
            SourceRegion(
                f"extra-{n}", None, offset, len(data), None, ((0, len(data)),), "", len(data)
            )
            for n, (offset, data) in enumerate(extra)
        ]

    @property
    def proves(self) -> str:
        return self.inner.proves

    @property
    def regions(self) -> list[SourceRegion]:
        return self._regions

    def read_window(self, region: int, number: int) -> bytes | None:
        first = len(self.inner.regions)
        if region < first:
            return self.inner.read_window(region, number)
        return self.extra[region - first]

    def window_hash(self, region: int, number: int) -> str | None:
        if region < len(self.inner.regions):
            return self.inner.window_hash(region, number)
        return None


class Sink(Protocol):
    def write(self, offset: int, length: int, data: bytes | None) -> None: ...

    def finish(self, size: int) -> None: ...


def _nonzero_blocks(data: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of the runs of `data` that are not all-zero BLOCK-sized blocks."""
    run_start: int | None = None
    for pos in range(0, len(data), BLOCK):
        block = data[pos : pos + BLOCK]
        if block.count(0) == len(block):
            if run_start is not None:
                yield run_start, pos
                run_start = None
        elif run_start is None:
            run_start = pos
    if run_start is not None:
        yield run_start, len(data)


class SparseSink:
    """A raw file (or a VM disk's raw view): bytes at their offsets, zero blocks skipped."""

    def __init__(self, fd: int, *, truncate: bool = True) -> None:
        self.fd = fd
        self.truncate = truncate

    def write(self, offset: int, length: int, data: bytes | None) -> None:
        if data is None:
            return
        view = memoryview(data)
        for start, end in _nonzero_blocks(data):
            pos = start
            while pos < end:
                pos += os.pwrite(self.fd, view[pos:end], offset + pos)

    def finish(self, size: int) -> None:
        if self.truncate:
            os.ftruncate(self.fd, size)
        os.fsync(self.fd)


class ZstdSink:
    """The raw disk as a zstd stream (multithreaded compressor), zeros included. A long run
    of zeros is written as ready-made frames of ZERO_RUN zeros each (2 KiB per 64 MiB)
    instead of being compressed again: a mostly empty disk costs no time. The file is then
    several frames in a row, which `zstd -d` and every zstd reader read as one stream."""

    def __init__(self, fd: int, *, level: int = 3, threads: int = 0) -> None:
        self.fd = fd
        self.level = level
        self.pos = 0
        self.dirty = False  # bytes in the current frame
        self.out = os.fdopen(fd, "wb", closefd=False)
        compressor = zstandard.ZstdCompressor(level=level, threads=threads or workers_default())
        self.stream = compressor.stream_writer(self.out, closefd=False)
        self.zero_frame = b""

    def _feed(self, data: bytes | memoryview) -> None:
        self.stream.write(data)
        self.dirty = True

    def _zeros(self, length: int) -> None:
        runs, length = divmod(length, ZERO_RUN)
        if runs:
            if self.dirty:
                self.stream.flush(zstandard.FLUSH_FRAME)
                self.dirty = False
            if not self.zero_frame:
                self.zero_frame = zstandard.ZstdCompressor(level=self.level).compress(
                    bytes(ZERO_RUN)
                )
            for _ in range(runs):
                self.out.write(self.zero_frame)
        while length > 0:
            step = min(length, FEED)
            self._feed(_ZEROS[:step])
            length -= step

    def write(self, offset: int, length: int, data: bytes | None) -> None:
        self._zeros(offset - self.pos)
        if data is None:
            self._zeros(length)
        else:
            self._feed(data)
        self.pos = offset + length

    def finish(self, size: int) -> None:
        self._zeros(size - self.pos)
        self.pos = size
        self.stream.close()  # type: ignore[no-untyped-call]  # ends the last frame
        self.out.flush()
        os.fsync(self.fd)


def _copy(
    source: ImageSource,
    sink: Sink,
    size: int,
    progress: Progress,
    cancel: threading.Event | None,
    workers: int | None,
) -> None:
    for offset, length, data in pieces(source, workers=workers, cancel=cancel):
        sink.write(offset, length, data)
        progress.add(length)
        progress.tick()
    sink.finish(size)


def write_file(
    source: ImageSource,
    size: int,
    path: Path,
    kind: str,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    level: int = 3,
    workers: int | None = None,
) -> None:
    """Write the disk of `size` bytes that `source` describes into `path` (made anew), as
    `kind` (file_kind's). `path` is the job's unfinished file; the job renames it."""
    progress = progress or Progress()
    if kind in ("img", "zst"):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            sink: Sink = ZstdSink(fd, level=level) if kind == "zst" else SparseSink(fd)
            _copy(source, sink, size, progress, cancel, workers)
        finally:
            os.close(fd)
        return
    path.unlink(missing_ok=True)
    vmdisk.create(path, kind, size)
    view = vmdisk.RawView(path, fmt=kind, writable=True)
    with view:
        if view.size < size:  # VHD rounds to its geometry unless force_size held
            raise ToolFailed(
                f"qemu-img made a {view.disk.kind} disk of {view.size} bytes for a disk of "
                f"{size} bytes."
            )
        fd = os.open(view.path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            _copy(source, SparseSink(fd, truncate=False), size, progress, cancel, workers)
        finally:
            os.close(fd)
    if view.returncode != 0:
        raise ToolFailed(
            f"qemu-storage-daemon failed while writing {path} (exit code {view.returncode})."
        )

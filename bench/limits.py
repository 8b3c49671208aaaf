"""The machine's limits for the bytes a save and a restore move, measured in the same run as
the jobs they judge (issue 15: save against min(read, compression), restore against
min(write, decompression)).

    python3 -m bench.limits DISK TARGET PARTS.json [--workers N] [--scratch DIR]
                                                                    (TARGET "-": no write)

PARTS.json: [[partition start, size, [[used start, length], ...]], ...] (the partclone maps,
as bench.rawread's windows take them). Untimed, every used 4 MiB window of DISK is read into
memory as the engine sees it (unused bytes inside a window zeroed). Then, timed, each alone:

- compression: zstd level 3 (the engine's compressor, python-zstandard) of every window on N
  threads (default: every core; the library releases the GIL), as if nothing else ran;
- decompression: the same frames back, on N threads;
- naming: blake3 of every window (the chunk's name), on N threads; `named_rate` counts it
  after the compression: the CPU every save spends whatever it does around it;
- write: every window's used spans written with O_DIRECT onto TARGET at their own offsets
  (4 MiB aligned buffers, one request at a time), then fsync: what a restore must write;
- with `--scratch DIR` (a folder on the repository's disk), the same write while a thread
  reads the compressed frames back from files in DIR, page cache dropped: the disk's work
  for a restore whose repository shares the target's disk.

Prints one JSON line: bytes (used data), seconds and MB/s (of used data) of each, and the
compressed share. TARGET's content is overwritten (the caller wipes it before the restore).
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import zstandard

from appliance.io.pipeline import WINDOW, spans
from appliance.io.windows import Window, windows
from appliance.repo.chunk import content_hash
from bench.sh import drop_caches

LEVEL = 3  # the engine's (appliance/repo/chunk.py Encoder)
ALIGN = 4096


def load_windows(node: str, parts: list[tuple[int, int, list[tuple[int, int]]]]) -> list[
    tuple[Window, bytes]
]:  # fmt: skip
    """Every used window of the disk and its bytes (unused ones zero), read through the page
    cache (untimed)."""
    out: list[tuple[Window, bytes]] = []
    with open(node, "rb", buffering=0) as disk:
        for start, size, used in parts:
            for win in windows(used, size, base=start):
                data = bytearray(win.length)
                for offset, length in win.used:
                    disk.seek(win.offset + offset)
                    got = disk.read(length)
                    if len(got) != length:
                        raise OSError(f"short read at {win.offset + offset} of {node}")
                    data[offset : offset + length] = got
                out.append((win, bytes(data)))
    return out


def _timed_map(
    workers: int, work: Callable[[bytes, int], bytes], items: list[bytes], sizes: list[int]
) -> tuple[float, list[bytes]]:
    with ThreadPoolExecutor(workers) as pool:
        started = time.perf_counter()
        results = list(pool.map(work, items, sizes))
        return time.perf_counter() - started, results


def compress_limit(datas: list[bytes], workers: int) -> tuple[float, list[bytes]]:
    """Seconds to compress every window on `workers` threads (one compressor each, set as
    the engine's Encoder sets it), and the frames."""
    local = threading.local()

    def squeeze(data: bytes, _size: int) -> bytes:
        cctx = getattr(local, "cctx", None)
        if cctx is None:
            cctx = local.cctx = zstandard.ZstdCompressor(
                level=LEVEL, write_checksum=False, write_content_size=True
            )
        return bytes(cctx.compress(data))

    return _timed_map(workers, squeeze, datas, [len(d) for d in datas])


def name_limit(datas: list[bytes], workers: int) -> float:
    """Seconds to name every window (blake3 of its bytes, as the engine's chunk names are)
    on `workers` threads (blake3 releases the GIL)."""

    def name(data: bytes, _size: int) -> bytes:
        content_hash(data)
        return b""

    seconds, _ = _timed_map(workers, name, datas, [len(d) for d in datas])
    return seconds


def decompress_limit(frames: list[bytes], sizes: list[int], workers: int) -> float:
    """Seconds to decompress every frame on `workers` threads."""
    local = threading.local()

    def expand(frame: bytes, size: int) -> bytes:
        dctx = getattr(local, "dctx", None)
        if dctx is None:
            dctx = local.dctx = zstandard.ZstdDecompressor()
        dctx.decompress(frame, max_output_size=size)
        return b""  # the bytes are dropped, as a restore drops them once written

    seconds, _ = _timed_map(workers, expand, frames, sizes)
    return seconds


def write_requests(loaded: list[tuple[Window, bytes]]) -> list[tuple[int, bytes]]:
    """Every window's used spans as (disk offset, bytes), aligned for O_DIRECT (untimed)."""
    requests = []
    for win, data in loaded:
        for start, length in spans(win.used):
            head = start - start % ALIGN  # O_DIRECT: aligned start and length
            end = min(-(-(start + length) // ALIGN) * ALIGN, win.length)
            requests.append((win.offset + head, data[head:end]))
    return requests


def write_all(node: str, requests: list[tuple[int, bytes]]) -> float:
    """Seconds to write `requests` onto `node` with O_DIRECT, then fsync."""
    buf = mmap.mmap(-1, WINDOW + ALIGN, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    view = memoryview(buf)
    fd = os.open(node, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
    try:
        started = time.perf_counter()
        for offset, piece in requests:
            size = -(-len(piece) // ALIGN) * ALIGN
            view[: len(piece)] = piece
            if size > len(piece):
                view[len(piece) : size] = bytes(size - len(piece))
            os.pwritev(fd, [view[:size]], offset)
        os.fsync(fd)
        return time.perf_counter() - started
    finally:
        os.close(fd)
        view.release()
        buf.close()


def write_limit(node: str, loaded: list[tuple[Window, bytes]]) -> float:
    """Seconds to write every window's used spans onto `node` with O_DIRECT, then fsync."""
    return write_all(node, write_requests(loaded))


def shared_limit(node: str, loaded: list[tuple[Window, bytes]], frames: list[bytes],
                 scratch: Path) -> float:  # fmt: skip
    """Seconds to read the frames back from files in `scratch` (as a restore reads its chunk
    files: one after the other, through the page cache, dropped first) while the used data
    is written onto `node` (write_limit), until both are done: what the disk does for a
    restore when the repository lies on the same disk as the target (as here)."""
    scratch.mkdir(parents=True, exist_ok=True)
    names = []
    for number, frame in enumerate(frames):
        path = scratch / f"frame-{number:06d}"
        path.write_bytes(frame)
        names.append(path)
    try:
        requests = write_requests(loaded)  # prepared as write_limit prepares them: untimed
        drop_caches()
        started = time.perf_counter()

        def read_all() -> None:
            for path in names:
                path.read_bytes()

        reader = threading.Thread(target=read_all)
        reader.start()
        write_all(node, requests)
        reader.join()
        return time.perf_counter() - started
    finally:
        for path in names:
            path.unlink(missing_ok=True)


def measure(node: str, target: str, parts: list[tuple[int, int, list[tuple[int, int]]]],
            workers: int, scratch: Path | None = None) -> dict[str, float]:  # fmt: skip
    loaded = load_windows(node, parts)
    used = sum(win.used_bytes for win, _ in loaded)
    datas = [data for _, data in loaded]
    squeeze_s, frames = compress_limit(datas, workers)
    expand_s = decompress_limit(frames, [len(d) for d in datas], workers)
    named_s = name_limit(datas, workers)
    write_s = write_limit(target, loaded) if target != "-" else float("nan")
    shared_s = float("nan")
    if target != "-" and scratch is not None:
        shared_s = shared_limit(target, loaded, frames, scratch)
    return {
        "bytes": used,
        "workers": workers,
        "compress_seconds": squeeze_s,
        "compress_rate": used / squeeze_s,
        "compressed_share": sum(map(len, frames)) / sum(map(len, datas)),
        "name_seconds": named_s,
        "named_rate": used / (squeeze_s + named_s),
        "decompress_seconds": expand_s,
        "decompress_rate": used / expand_s,
        "write_seconds": write_s,
        "write_rate": used / write_s,
        "shared_seconds": shared_s,
        "shared_rate": used / shared_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.limits")
    parser.add_argument("disk")
    parser.add_argument("target")
    parser.add_argument("parts", type=Path)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--scratch", type=Path, help="a folder on the repository's disk")
    args = parser.parse_args(argv)
    parts = [(int(s), int(n), [(int(a), int(b)) for a, b in u])
             for s, n, u in json.loads(args.parts.read_text())]  # fmt: skip
    print(json.dumps(measure(args.disk, args.target, parts, args.workers, args.scratch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The raw read of the used data, and digests of it for the restore checks.

`python3 -m bench.rawread DISK RANGES.json` reads the given disk ranges with O_DIRECT into
one page-aligned 4 MiB buffer, one request at a time, and does nothing else with the bytes:
the speed limit of the source side. The ranges are the partclone -D used maps cut at the
engine's 4 MiB windows and joined across holes smaller than the engine's read gap (the
engine reads through small holes too), so this is the best any reader of those maps can do
with this request size.
"""

from __future__ import annotations

import json
import mmap
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import blake3

from appliance.io.pipeline import WINDOW, spans
from appliance.io.windows import windows

BUFFER = WINDOW


@dataclass(frozen=True)
class UsedWindow:
    offset: int  # disk offset of the window
    used: tuple[tuple[int, int], ...]  # used ranges relative to the window


def used_windows(parts: list[tuple[int, int, list[tuple[int, int]]]]) -> list[UsedWindow]:
    """(partition start, size, used ranges relative to it) -> the windows the engine reads."""
    return [
        UsedWindow(win.offset, win.used)
        for start, size, used in parts
        for win in windows(used, size, base=start)
    ]


def read_requests(windows: list[UsedWindow]) -> list[tuple[int, int]]:
    """Disk ranges to read: each window's used ranges joined across small holes."""
    return [(w.offset + s, n) for w in windows for s, n in spans(w.used)]


def read_all(node: str, requests: list[tuple[int, int]]) -> int:
    fd = os.open(node, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
    buf = mmap.mmap(-1, BUFFER, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    view = memoryview(buf)
    total = 0
    try:
        for offset, length in requests:
            pos = 0
            while pos < length:
                step = min(BUFFER, length - pos)
                got = os.preadv(fd, [view[:step]], offset + pos)
                if got <= 0:
                    raise OSError(f"short read at {offset + pos}")
                pos += got
            total += length
    finally:
        view.release()
        buf.close()
        os.close(fd)
    return total


def window_digests(node: str, windows: list[UsedWindow]) -> list[str]:
    """blake3 of each window's used bytes (read through the page cache, untimed checks)."""
    digests: list[str] = []
    with open(node, "rb", buffering=0) as disk:
        for win in windows:
            hasher = blake3.blake3()
            for start, length in win.used:
                disk.seek(win.offset + start)
                data = disk.read(length)
                if len(data) != length:
                    raise OSError(f"short read at {win.offset + start} of {node}")
                hasher.update(data)
            digests.append(hasher.hexdigest())
    return digests


def main(argv: list[str]) -> int:
    node, ranges_file = argv
    requests = [(int(a), int(b)) for a, b in json.loads(Path(ranges_file).read_text())]
    print(read_all(node, requests))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Windows: a region's bytes cut into the repository's 4 MiB windows (format v1's chunk
size), and the used ranges that fall in each.

Every job that moves or checks bytes walks a region window by window: save (hash and store
each window), restore (write each stored chunk), verify (compare each window's hash), clone
(copy each window), the copy-on-write view (read a window back) and the save's proofs
(count windows stored). They all walk with `windows` here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache

from appliance.repo.chunk import content_hash
from appliance.repo.manifest import window_ranges
from appliance.repo.repository import WINDOW

__all__ = ["WINDOW", "Window", "window_count", "window_length", "windows", "zero_hash"]


@dataclass(frozen=True)
class Window:
    region: int  # index into the job's region list
    number: int  # window number inside the region
    offset: int  # disk offset of the window's first byte
    length: int  # bytes in the window (the last one may be short)
    used: tuple[tuple[int, int], ...]  # used ranges relative to the window start

    @property
    def used_bytes(self) -> int:
        return sum(length for _, length in self.used)


def window_count(size: int, window: int = WINDOW) -> int:
    """How many windows a region of `size` bytes has (the last one may be short)."""
    return (size + window - 1) // window


def window_length(number: int, size: int, window: int = WINDOW) -> int:
    """The bytes in window `number` of a region of `size` bytes."""
    return max(0, min(window, size - number * window))


def windows(
    used: Iterable[tuple[int, int]],
    size: int,
    *,
    base: int = 0,
    region: int = 0,
    window: int = WINDOW,
) -> Iterator[Window]:
    """The windows of a region of `size` bytes that hold used bytes, in order: each with
    its disk offset (`base` is where the region starts) and its used ranges relative to
    the window. A range crossing a window's edge is split; bytes past `size` are dropped."""
    by_window = window_ranges(list(used), window, size)
    for number in sorted(by_window):
        offset = number * window
        yield Window(
            region,
            number,
            base + offset,
            window_length(number, size, window),
            tuple(by_window[number]),
        )


@cache
def zero_hash(length: int) -> str:
    """The chunk name a window of `length` zero bytes would have: such a window is never
    stored, and the index says None in its place."""
    return content_hash(bytes(length))

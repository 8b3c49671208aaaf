"""Sizes, rates and durations as people read them: the one formatter of every front end
(the command line, the TUI, the unattended console and the logs)."""

from __future__ import annotations


def human_size(size: int) -> str:
    """1000-based units, as disk vendors print them: 512.1 GB."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def speed(bytes_per_second: float, width: int = 0) -> str:
    """123.4 MB/s (the number right-aligned in `width` columns for a line that updates)."""
    return f"{bytes_per_second / 1e6:{width}.1f} MB/s"


def megabytes(size: float) -> str:
    """1,234 MB: one unit for a progress line whose figures must not change their width."""
    return f"{size / 1e6:,.0f} MB"


def clock(seconds: float | None) -> str:
    """0:42, 12:05 or 1:02:03; --:-- while unknown."""
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def rate(nbytes: int, seconds: float) -> str:
    """How much moved, in how long, how fast: "3.1 GB in 0:42 (73.8 MB/s)"."""
    per = nbytes / seconds if seconds > 0 else 0.0
    return f"{human_size(nbytes)} in {clock(seconds)} ({speed(per)})"

"""Progress events: never more done than the total, and a total corrected at its source."""

from __future__ import annotations

import io

from appliance.progress import Progress, ProgressEvent, terminal_listener


def test_done_never_passes_the_total() -> None:
    seen: list[ProgressEvent] = []
    progress = Progress(seen.append)
    progress.total = 100
    progress.set_phase("restore")
    progress.add(150)  # an estimate that fell short
    progress.tick(force=True)
    assert seen[-1].done == 150 and seen[-1].total == 150
    assert seen[-1].eta is not None and seen[-1].eta <= 0.001


def test_adjust_total_replaces_an_estimate() -> None:
    progress = Progress()
    progress.total = 1000
    progress.add(400)
    progress.adjust_total(-300)  # a shrunk partition holds fewer used bytes than the source
    assert progress.event().total == 700
    progress.adjust_total(-10_000)  # never below what is done
    assert progress.event().total == 400


def test_terminal_line_never_shows_more_than_100_percent() -> None:
    out = io.StringIO()
    show = terminal_listener(out)
    show(ProgressEvent("restore", 200, 100, 1e6, 0.0, 6.0, "x"))
    show(ProgressEvent("done", 0, 0, 0.0, None, 7.0, "nothing to copy"))
    lines = out.getvalue().splitlines()
    assert "100.0%" in lines[0] and "200.0%" not in lines[0]
    assert "  -  " in lines[1]

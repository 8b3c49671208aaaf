"""Progress events: never more done than the total, and a total corrected at its source."""

from __future__ import annotations

import io

from appliance.progress import (
    Phase,
    Progress,
    ProgressEvent,
    phase_words,
    terminal_listener,
    writes_target,
)


def test_done_never_passes_the_total() -> None:
    seen: list[ProgressEvent] = []
    progress = Progress(seen.append)
    progress.total = 100
    progress.set_phase(Phase.RESTORE)
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


def test_every_phase_has_words_and_says_whether_it_writes_the_target() -> None:
    # the values are what --progress=json prints: scripts depend on them
    assert [p.value for p in Phase] == [
        "start", "map", "save", "proof", "sync", "check", "table",
        "restore", "clone", "copy", "resize", "verify", "export", "write", "extract", "done",
    ]  # fmt: skip
    for phase in Phase:
        assert (phase.words and phase.words != phase.value) or phase is Phase.SAVE
        assert phase_words(phase.value) == phase.words
    writing = {p.value for p in Phase if writes_target(p.value)}
    assert writing == {"table", "restore", "clone", "copy", "resize", "write"}
    assert phase_words("later") == "later" and not writes_target("later")

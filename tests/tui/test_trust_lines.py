"""What the interface says of trust: a disk that holds an interrupted restore, and a restore
of an image that was never verified (every chunk is re-hashed before the first write)."""

from __future__ import annotations

import dataclasses

from kit.tui.fakes import BLANK, LAPTOP, FakeBackend

from appliance.jobs.plantext import PlanText, holds_now
from tui.jobspec import WritePlan
from tui.session import Session
from tui.widgets.planview import render_plan

HALF = dataclasses.replace(
    BLANK, incomplete="incomplete restore of lab-2026, started 2026-12-01 09:00:00 UTC"
)


def plan(target: object = BLANK, *, verify_first: bool = False) -> WritePlan:
    assert isinstance(target, type(BLANK))
    text = PlanText(
        "restore",
        "image lab-2026",
        target.describe(),
        holds_now(target, None),
        ("GPT partition table",),
        (),
    )
    return WritePlan("restore", target, text, 1000, verify_first=verify_first)


def test_an_interrupted_restore_is_named_in_the_note_and_the_confirmation() -> None:
    session = Session(FakeBackend(disks=[LAPTOP, HALF]))
    scan = session.scan()
    assert session.disk_notes(scan)["sdb"] == "INCOMPLETE"
    text = render_plan(plan(HALF)).plain
    assert "now: an incomplete restore of lab-2026, started 2026-12-01" in text
    assert "no valid partition table" in text
    assert "incomplete" not in render_plan(plan(BLANK)).plain


def test_a_never_verified_image_is_re_hashed_first_and_the_confirmation_says_so() -> None:
    assert "never verified" in render_plan(plan(verify_first=True)).plain
    assert "never verified" not in render_plan(plan(verify_first=False)).plain

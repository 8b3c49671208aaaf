"""Snapshot tests (pytest-textual-snapshot): every screen at 80x25 and 120x40, over the fake
engine, so that every picture is the same on every machine. Update them after a deliberate
change with `pytest tests/tui/test_snapshots.py --snapshot-update`, and look at the report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kit.tui.scenes import SCENES, Scene, scene_app

SIZES = [(80, 25), (120, 40)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("scene", SCENES, ids=lambda s: s.name)
def test_screen(scene: Scene, size: tuple[int, int], snap_compare: Callable[..., bool]) -> None:
    if scene.console and size != (80, 25):
        pytest.skip("the console look is checked at the console's own size")

    async def steps(pilot: Any) -> None:
        await scene.steps(pilot)

    assert snap_compare(scene_app(scene), terminal_size=size, run_before=steps)

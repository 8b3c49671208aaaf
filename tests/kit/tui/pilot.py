"""TUI test helpers: an app over the fake engine, and a way to drive it with Pilot.

(Not a conftest.py: a second module named conftest would hide tests/conftest.py.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from textual.pilot import Pilot

from kit.tui.fakes import FakeBackend
from tui.app import ApplianceApp
from tui.look import Look

Scenario = Callable[[Pilot[int]], Awaitable[None]]


def fake_app(
    backend: FakeBackend | None = None,
    *,
    look: Look | None = None,
    repo: str | None = "/media/images/appliance",
) -> ApplianceApp:
    return ApplianceApp(
        backend or FakeBackend(),
        look=look or Look(ascii=False, console=False),
        repo=repo,
        watch=False,
        log_path="/var/log/appliance.log",
        blink=False,
    )


def drive(app: ApplianceApp, scenario: Scenario, size: tuple[int, int] = (120, 40)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await scenario(pilot)

    asyncio.run(main())


async def until(
    pilot: Pilot[int],
    check: Callable[[], bool],
    timeout: float = 10.0,
    what: str = "the screen to change",
) -> None:
    """Let the app run until `check()` is true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def screen_text(app: ApplianceApp) -> str:
    """Every character on the screen now, a line per row."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())

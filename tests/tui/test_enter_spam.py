"""Pressing Enter over and over never confirms a destructive job."""

from __future__ import annotations

import dataclasses
import threading

from kit.tui.fakes import BLANK, FakeBackend
from kit.tui.pilot import drive, fake_app, until
from textual.pilot import Pilot

from tui.screens.ask import AskScreen
from tui.screens.confirm import ConfirmScreen, confirms
from tui.screens.job import JobScreen
from tui.widgets.disktable import DiskTable


def test_enter_spam_through_restore_never_erases() -> None:
    backend = FakeBackend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        await pilot.press("r")
        for _ in range(60):
            await pilot.press("enter")
            await pilot.pause(0.01)
        await pilot.press("down")  # a disk the engine accepts: sdb
        for _ in range(60):
            await pilot.press("enter")
            await pilot.pause(0.01)
        assert backend.ran == []
        assert not isinstance(app.screen, JobScreen)

    drive(app, scenario)


def test_enter_spam_on_the_confirmation_never_erases() -> None:
    backend = FakeBackend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        for key in ("r", "enter", "down", "down", "enter"):
            await pilot.press(key)
            await pilot.pause(0.1)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        for _ in range(100):
            await pilot.press("enter")
        await pilot.press("tab", "enter", "tab", "enter", "space", "enter")
        assert backend.ran == []
        assert not isinstance(app.screen, JobScreen)

    drive(app, scenario)


def test_enter_spam_through_clone_never_erases() -> None:
    backend = FakeBackend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        await pilot.press("c")
        for _ in range(30):
            await pilot.press("enter")
        await pilot.press("down")
        for _ in range(60):
            await pilot.press("enter")
        assert backend.ran == []

    drive(app, scenario)


def test_enter_on_the_stop_question_goes_on() -> None:
    backend = FakeBackend()
    backend.gate = threading.Event()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        for key in ("r", "enter", "down", "down", "enter"):
            await pilot.press(key)
            await pilot.pause(0.1)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("s", "d", "b", "enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        job = app.screen
        assert isinstance(job, JobScreen)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, AskScreen))
        for _ in range(20):
            await pilot.press("enter")
        await until(pilot, lambda: app.screen is job)
        assert job.running and not job.cancel.is_set()
        await pilot.press("escape")  # asked once more, and this time: yes
        await until(pilot, lambda: isinstance(app.screen, AskScreen))
        await pilot.press("y")
        await until(pilot, lambda: not job.running, what="the job to stop")
        text = "\n".join(s.text for s in app.screen._compositor.render_strips())
        assert "Stopped: you stopped the restore." in text
        assert "partly overwritten" in text and "/dev/sdb" in text

    drive(app, scenario)


def test_only_the_name_or_the_serials_end_confirms() -> None:
    assert confirms(BLANK, "sdb") and confirms(BLANK, "/dev/sdb") and confirms(BLANK, " 4571 ")
    for typed in ("", " ", "\n", "y", "yes", "sda", "sd", "SDB", "457", "WD-WCC6Y3KX4571", "4570"):
        assert not confirms(BLANK, typed), typed
    nameless = dataclasses.replace(BLANK, serial="ab")
    assert not confirms(nameless, "ab") and confirms(nameless, "sdb")

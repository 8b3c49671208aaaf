"""The Room screen (multicast) over the fake engine: sending an image of the open
repository to N receivers with a wait, and receiving onto a disk of this PC through the
same confirmation as a restore (the engine's refusal first; the disk's name typed)."""

from __future__ import annotations

from kit.tui.fakes import FakeBackend
from kit.tui.pilot import drive, fake_app, screen_text, until
from textual.pilot import Pilot
from textual.widgets import Input

from tui.screens.confirm import ConfirmScreen
from tui.screens.job import JobScreen
from tui.screens.room import RoomScreen
from tui.widgets.disktable import DiskTable
from tui.widgets.imagetable import ImageTable


async def _room(pilot: Pilot[int]) -> RoomScreen:
    await pilot.press("m")
    await until(pilot, lambda: isinstance(pilot.app.screen, RoomScreen))
    screen = pilot.app.screen
    assert isinstance(screen, RoomScreen)
    await until(pilot, lambda: len(screen.query_one(ImageTable).keys) == 2)
    return screen


def _set(screen: RoomScreen, field: str, value: str) -> None:
    screen.query_one(f"#{field}", Input).value = value


def test_send_an_image_to_a_room() -> None:
    backend = FakeBackend()

    async def scenario(pilot: Pilot[int]) -> None:
        screen = await _room(pilot)
        _set(screen, "receivers", "3")
        _set(screen, "wait", "60")
        screen.query_one(ImageTable).focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, JobScreen))
        await until(pilot, lambda: "did not come within 60 s" in screen_text(pilot.app))
        assert [c[1:] for c in backend.casts] == [("office-pc-2024-04-02", 3, 60)]
        assert backend.ran == ["cast"]

    drive(fake_app(backend), scenario)


def test_a_wrong_count_is_one_sentence_and_sends_nothing() -> None:
    backend = FakeBackend()

    async def scenario(pilot: Pilot[int]) -> None:
        screen = await _room(pilot)
        _set(screen, "receivers", "0")
        screen.query_one(ImageTable).focus()
        await pilot.press("enter")
        await until(pilot, lambda: "Receivers must be a whole number" in screen_text(pilot.app))
        assert pilot.app.screen is screen and backend.casts == []

    drive(fake_app(backend), scenario)


def test_receive_is_confirmed_by_the_disks_name() -> None:
    backend = FakeBackend()

    async def scenario(pilot: Pilot[int]) -> None:
        screen = await _room(pilot)
        table = screen.query_one(DiskTable)
        table.focus()
        table.select_key("sdb")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
        assert "Receive will ERASE this disk" in screen_text(pilot.app)
        await pilot.press("enter")  # nothing typed: refused
        assert isinstance(pilot.app.screen, ConfirmScreen) and backend.received == []
        await pilot.press(*"sdb", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, JobScreen))
        await until(pilot, lambda: "fetched over HTTP" in screen_text(pilot.app))
        assert backend.received == ["sdb"] and backend.ran == ["restore"]

    drive(fake_app(backend), scenario)


def test_receive_refused_or_backed_out_writes_nothing() -> None:
    backend = FakeBackend()

    async def scenario(pilot: Pilot[int]) -> None:
        screen = await _room(pilot)
        table = screen.query_one(DiskTable)
        table.focus()
        table.select_key("sdc")  # the stick the system started from
        await pilot.press("enter")
        await until(pilot, lambda: "is the USB stick this system" in screen_text(pilot.app))
        assert pilot.app.screen is screen
        table.select_key("sdb")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
        await pilot.press("escape")
        await until(pilot, lambda: pilot.app.screen is screen)
        assert "Nothing was written to /dev/sdb" in screen_text(pilot.app)
        assert backend.received == [] and backend.ran == []

    drive(fake_app(backend), scenario)

"""Restore onto several disks in the interface: the image, disks marked with M (then Enter
marks too), W, then each disk's name typed on its own confirmation; a refused confirmation
writes nothing to any of them."""

from __future__ import annotations

from kit.tui.fakes import FakeBackend
from kit.tui.pilot import drive, fake_app, screen_text, until
from textual.pilot import Pilot

from tui.screens.confirm import ConfirmScreen
from tui.screens.job import JobScreen
from tui.screens.restore import RestoreScreen
from tui.widgets.disktable import DiskTable
from tui.widgets.imagetable import ImageTable


async def _to_marked(pilot: Pilot[int], names: list[str]) -> RestoreScreen:
    await pilot.press("r")
    await until(pilot, lambda: isinstance(pilot.app.screen, RestoreScreen))
    screen = pilot.app.screen
    assert isinstance(screen, RestoreScreen)
    await until(pilot, lambda: len(screen.query_one(ImageTable).keys) == 2)
    await pilot.press("enter")
    await until(pilot, lambda: screen.image is not None)
    table = screen.query_one(DiskTable)
    await until(pilot, lambda: table.has_focus)
    table.select_key(names[0])
    await pilot.press("m")  # the first with M: from then on Enter marks too
    for name in names[1:]:
        table.select_key(name)
        await pilot.press("enter")
    await until(pilot, lambda: screen.chosen == names)
    assert "RESTORE" in screen_text(pilot.app) and "W restores onto them" in screen_text(pilot.app)
    return screen


def test_every_marked_disk_is_confirmed_by_name_then_restored() -> None:
    backend = FakeBackend()

    async def scenario(pilot: Pilot[int]) -> None:
        screen = await _to_marked(pilot, ["sda", "sdb"])
        await pilot.press("w")
        for name in screen.chosen:
            await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), what=name)
            confirm = pilot.app.screen
            assert isinstance(confirm, ConfirmScreen) and confirm.plan.target.name == name
            assert "Restore will ERASE this disk" in screen_text(pilot.app)
            await pilot.press(*name, "enter")
            await until(pilot, lambda c=confirm: pilot.app.screen is not c)  # type: ignore[misc]
        await until(pilot, lambda: isinstance(pilot.app.screen, JobScreen))
        await until(pilot, lambda: "restored and proven" in screen_text(pilot.app))
        assert backend.restored_many == [["sda", "sdb"]] and backend.ran == ["restore"]

    drive(fake_app(backend), scenario)


def test_unmarking_and_a_refused_confirmation_write_nothing() -> None:
    backend = FakeBackend()

    async def scenario(pilot: Pilot[int]) -> None:
        screen = await _to_marked(pilot, ["sdb", "sda"])
        await pilot.press("m")  # sda unmarked again
        await until(pilot, lambda: screen.chosen == ["sdb"])
        await pilot.press("w")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
        await pilot.press("escape")
        await until(pilot, lambda: pilot.app.screen is screen)
        assert "Nothing was written to /dev/sdb" in screen_text(pilot.app)
        assert backend.restored_many == [] and backend.ran == []

    drive(fake_app(backend), scenario)


def test_a_refused_disk_is_one_sentence() -> None:
    backend = FakeBackend()

    async def scenario(pilot: Pilot[int]) -> None:
        await _to_marked(pilot, ["sdb", "sdc"])  # sdc holds the repository
        await pilot.press("w")
        await until(pilot, lambda: "holds the repository" in screen_text(pilot.app))
        assert isinstance(pilot.app.screen, RestoreScreen) and backend.restored_many == []

    drive(fake_app(backend), scenario)

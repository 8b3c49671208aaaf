"""Write file in the interface: a path, disks marked with Enter, W, then each disk's name
typed on its own confirmation; a refused confirmation writes nothing to any of them."""

from __future__ import annotations

from pathlib import Path

from kit.tui.fakes import FakeBackend
from kit.tui.pilot import drive, fake_app, screen_text, until
from textual.pilot import Pilot
from textual.widgets import Input

from tui.screens.confirm import ConfirmScreen
from tui.screens.job import JobScreen
from tui.screens.writefile import WriteFileScreen
from tui.widgets.disktable import DiskTable


async def _to_marked(pilot: Pilot[int], backend: FakeBackend, folder: Path) -> WriteFileScreen:
    await pilot.press("w")
    await until(pilot, lambda: isinstance(pilot.app.screen, WriteFileScreen))
    screen = pilot.app.screen
    assert isinstance(screen, WriteFileScreen)
    (folder / "debian-12.iso").write_bytes(bytes(4096))
    screen.query_one(Input).value = str(folder / "debian-12.iso")
    await pilot.press("enter")  # the path: focus moves to the disks
    table = screen.query_one(DiskTable)
    await until(pilot, lambda: table.has_focus)
    names = [d.name for d in backend.disks]
    for name in names[1:]:  # every disk but the first
        table.select_key(name)
        await pilot.press("enter")
    await until(pilot, lambda: screen.chosen == names[1:])
    assert "WRITE" in screen_text(pilot.app)
    return screen


def test_every_marked_disk_is_confirmed_by_name_then_written(tmp_path: Path) -> None:
    backend = FakeBackend()

    async def scenario(pilot: Pilot[int]) -> None:
        screen = await _to_marked(pilot, backend, tmp_path)
        await pilot.press("w")
        for name in screen.chosen:
            await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), what=name)
            confirm = pilot.app.screen
            assert isinstance(confirm, ConfirmScreen) and confirm.plan.target.name == name
            assert "Write will ERASE this disk" in screen_text(pilot.app)
            await pilot.press(*name, "enter")
            await until(pilot, lambda c=confirm: pilot.app.screen is not c)  # type: ignore[misc]
        await until(pilot, lambda: isinstance(pilot.app.screen, JobScreen))
        await until(pilot, lambda: "Every disk was read back" in screen_text(pilot.app))
        assert backend.written_files == [screen.chosen]

    drive(fake_app(backend), scenario)


def test_a_refused_confirmation_writes_nothing(tmp_path: Path) -> None:
    backend = FakeBackend()

    async def scenario(pilot: Pilot[int]) -> None:
        screen = await _to_marked(pilot, backend, tmp_path)
        await pilot.press("w")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
        await pilot.press("escape")
        await until(pilot, lambda: pilot.app.screen is screen)
        assert "Nothing was written" in screen_text(pilot.app)
        assert backend.written_files == [] and "write" not in backend.ran

    drive(fake_app(backend), scenario)


def test_a_file_that_is_not_an_image_is_one_sentence(tmp_path: Path) -> None:
    backend = FakeBackend()

    async def scenario(pilot: Pilot[int]) -> None:
        screen = await _to_marked(pilot, backend, tmp_path)
        screen.query_one(Input).value = str(tmp_path / "notes.txt")
        await pilot.press("w")
        await until(pilot, lambda: "not a disk image file" in screen_text(pilot.app))
        assert isinstance(pilot.app.screen, WriteFileScreen) and backend.written_files == []

    drive(fake_app(backend), scenario)

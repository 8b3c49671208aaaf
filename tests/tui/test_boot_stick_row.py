"""The stick the appliance booted from in the interface's disk lists: shown greyed as "this
boot stick" (no table), and refused with the engine's one sentence wherever a disk is chosen:
save, restore (one disk or marked for several), clone (source and target), write file and
verify against a disk."""

from __future__ import annotations

from kit.tui.fakes import FakeBackend
from kit.tui.pilot import drive, fake_app, screen_text, until
from rich.text import Text
from textual.pilot import Pilot
from textual.screen import Screen

from appliance.disk.model import Disk
from tui.screens.clone import CloneScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.flow import FlowScreen
from tui.screens.home import HomeScreen
from tui.screens.job import JobScreen
from tui.screens.restore import RestoreScreen
from tui.screens.save import SaveScreen
from tui.screens.verify import VerifyScreen
from tui.screens.writefile import WriteFileScreen
from tui.widgets.disktable import DiskTable
from tui.widgets.errorline import ErrorLine
from tui.widgets.imagetable import ImageTable
from tui.widgets.parttable import PartitionTable

BOOT = Disk(
    name="sdd",
    node="/dev/sdd",
    size=16_008_609_792,
    logical_sector=512,
    physical_sector=512,
    model="Kingston DataTraveler 3.0",
    serial="E0D55EA57405F3B0",
    devnum=(8, 48),
    removable=True,
    readonly=True,
    boot_stick=True,
)
SENTENCE = (
    "! Kingston DataTraveler 3.0 (serial E0D55EA57405F3B0, 16.0 GB) at /dev/sdd is the "
    "stick this appliance booted from; choose another disk."
)


def _backend() -> FakeBackend:
    backend = FakeBackend()
    backend.disks.append(BOOT)
    return backend


def said(screen: Screen[None]) -> str:
    return str(screen.query_one(ErrorLine).content)


async def _refused(pilot: Pilot[int], screen: FlowScreen, table_id: str, key: str) -> None:
    """Enter (or `key`) on the boot stick's row of `table_id`: its sentence, nothing else."""
    table = screen.query_one(f"#{table_id}", DiskTable)
    assert table.select_key("sdd")
    table.focus()
    await pilot.press(key)
    await until(pilot, lambda: said(screen) == SENTENCE, what="the boot stick's sentence")
    await pilot.pause(0.2)
    assert pilot.app.screen is screen, "the boot stick went on to a plan or a job"


def test_every_list_shows_it_greyed_as_this_boot_stick() -> None:
    app = fake_app(_backend())

    async def scenario(pilot: Pilot[int]) -> None:
        table = app.screen.query_one(DiskTable)
        await until(pilot, lambda: "sdd" in table.keys)
        row = table.get_row("sdd")
        assert [str(cell) for cell in row][4:] == ["-", "this boot stick"]
        assert all(isinstance(c, Text) and "dim" in str(c.style) for c in row), row
        assert all(
            not isinstance(c, Text) or "dim" not in str(c.style) for c in table.get_row("sda")
        )
        table.select_key("sdd")
        await until(pilot, lambda: "Partitions of Kingston" in screen_text(app))
        parts = app.screen.query_one(PartitionTable)
        assert str(parts.get_row("none")[0]).startswith("this boot stick: the appliance runs")
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RestoreScreen))
        target = app.screen.query_one("#target", DiskTable)
        await until(pilot, lambda: "sdd" in target.keys)
        assert str(target.get_row("sdd")[5]) == "this boot stick"

    drive(app, scenario)


def test_restore_refuses_it_as_the_target_and_as_a_marked_disk() -> None:
    backend = _backend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RestoreScreen))
        screen = app.screen
        assert isinstance(screen, RestoreScreen)
        await until(pilot, lambda: len(screen.query_one(ImageTable).keys) == 2)
        await pilot.press("enter")
        await until(pilot, lambda: screen.image is not None)
        await _refused(pilot, screen, "target", "enter")
        await _refused(pilot, screen, "target", "m")
        assert screen.chosen == []
        screen.query_one("#target", DiskTable).select_key("sdb")
        await pilot.press("m")  # another disk is marked as before; the stick still is not
        await until(pilot, lambda: screen.chosen == ["sdb"])
        await _refused(pilot, screen, "target", "enter")
        assert screen.chosen == ["sdb"] and backend.ran == []

    drive(app, scenario)


def test_clone_refuses_it_as_source_and_as_target() -> None:
    backend = _backend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CloneScreen))
        screen = app.screen
        assert isinstance(screen, CloneScreen)
        await _refused(pilot, screen, "source", "enter")
        assert screen.source is None
        screen.query_one("#source", DiskTable).select_key("sda")
        await pilot.press("enter")
        await until(pilot, lambda: screen.source is not None)
        await _refused(pilot, screen, "target", "enter")
        assert not isinstance(app.screen, (ConfirmScreen, JobScreen)) and backend.ran == []

    drive(app, scenario)


def test_save_write_and_verify_refuse_it() -> None:
    backend = _backend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, SaveScreen))
        save = app.screen
        assert isinstance(save, SaveScreen)
        await _refused(pilot, save, "source", "enter")
        assert save.disk is None and save.preflight is None
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))

        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, WriteFileScreen))
        write = app.screen
        assert isinstance(write, WriteFileScreen)
        await _refused(pilot, write, "target", "enter")
        assert write.chosen == []
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))

        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, VerifyScreen))
        verify = app.screen
        assert isinstance(verify, VerifyScreen)
        await until(pilot, lambda: len(verify.query_one(ImageTable).keys) == 2)
        await pilot.press("enter")
        await until(pilot, lambda: verify.image is not None)
        await _refused(pilot, verify, "against", "enter")
        assert backend.ran == []

    drive(app, scenario)

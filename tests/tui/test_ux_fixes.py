"""What a user expects of the interface (issue 9, section 5): the Stop question goes away when
the job ends by itself, Restart and Power off ask once, Restore and Clone never start on the
disk that happened to be highlighted, a filesystem on a whole disk is not an empty disk, and
the Clone confirmation speaks in sizes like Restore's."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from kit.tui.fakes import FakeBackend
from kit.tui.pilot import drive, fake_app, screen_text, until
from textual.pilot import Pilot

from appliance.disk.model import Disk
from appliance.jobs.plantext import clone_layout, restore_layout
from appliance.jobs.save import RegionPlan
from appliance.plan.fit import SourcePart, fit
from appliance.repo.manifest import Region
from appliance.repo.records import TableRecord
from tui.screens.ask import AskScreen
from tui.screens.clone import CloneScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.job import JobScreen
from tui.screens.restore import RestoreScreen
from tui.widgets.disktable import DiskTable

MiB = 1024 * 1024


async def _restore_onto_sdb(pilot: Pilot[int]) -> JobScreen:
    await until(pilot, lambda: len(pilot.app.screen.query_one(DiskTable).keys) == 3)
    for key in ("r", "enter", "down", "down", "enter"):
        await pilot.press(key)
        await pilot.pause(0.1)
    await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
    await pilot.press("s", "d", "b", "enter")
    await until(pilot, lambda: isinstance(pilot.app.screen, JobScreen))
    job = pilot.app.screen
    assert isinstance(job, JobScreen)
    return job


def test_stop_question_closes_when_the_job_ends() -> None:
    backend = FakeBackend()
    backend.gate = threading.Event()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        job = await _restore_onto_sdb(pilot)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, AskScreen))
        assert backend.gate is not None
        backend.gate.set()  # the job finishes while the user still reads the question
        await until(pilot, lambda: not job.running, what="the job to end")
        await until(pilot, lambda: app.screen is job, what="the question to close")
        assert not job.cancel.is_set() and backend.ran == ["restore"]
        assert "Done: the restore finished." in screen_text(app)
        assert not any(isinstance(s, AskScreen) for s in app.screen_stack)

    drive(app, scenario)


def test_restart_and_power_off_ask_once() -> None:
    app = fake_app(FakeBackend())

    async def scenario(pilot: Pilot[int]) -> None:
        job = await _restore_onto_sdb(pilot)
        await until(pilot, lambda: not job.running)
        await pilot.press("b", "b")  # a second press never stacks a second question
        await until(pilot, lambda: isinstance(app.screen, AskScreen))
        assert sum(isinstance(s, AskScreen) for s in app.screen_stack) == 1
        assert "Restart now" in screen_text(app)
        await pilot.press("n")
        await until(pilot, lambda: app.screen is job)
        assert app.return_code is None
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, AskScreen))
        assert "Power off now" in screen_text(app)
        await pilot.press("y")  # one yes is enough
        await until(pilot, lambda: app.return_code == 81, what="the app to leave with 81")

    drive(app, scenario)


def test_restore_and_clone_never_start_on_the_highlighted_disk() -> None:
    backend = FakeBackend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        await pilot.press("down")  # sdb highlighted on Home
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RestoreScreen))
        restore = app.screen
        await until(pilot, lambda: len(restore.query_one(DiskTable).disks) == 3)
        target = restore.query_one(DiskTable)
        assert target.current_disk() is None  # on "(choose a disk)"
        for _ in range(5):
            await pilot.press("enter")
        assert isinstance(app.screen, RestoreScreen)
        assert "Choose the disk to restore onto first" in screen_text(app)
        await pilot.press("escape")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CloneScreen))
        clone = app.screen
        await until(pilot, lambda: len(clone.query_one("#target", DiskTable).disks) == 3)
        for _ in range(5):
            await pilot.press("enter")
        assert isinstance(app.screen, CloneScreen)
        assert clone.query_one("#target", DiskTable).current_disk() is None
        assert backend.ran == []

    drive(app, scenario)


def test_a_whole_disk_filesystem_is_not_an_empty_disk() -> None:
    backend = FakeBackend(whole={"sdb": "ext4 BACKUP"})
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        await pilot.press("down")
        await until(pilot, lambda: "whole disk, no partition table" in screen_text(app))
        text = screen_text(app)
        assert "ext4, no table" in text and "BACKUP" in text
        for key in ("escape", "r", "enter", "down", "down", "enter"):
            await pilot.press(key)
            await pilot.pause(0.1)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        text = screen_text(app)
        assert "a filesystem on the whole disk (no partition table): ext4 BACKUP" in text
        assert "holds no partitions" not in text

    drive(app, scenario)


def test_clone_confirmation_speaks_like_restore() -> None:
    """The same lines for the same layout, whether it comes from an image or a disk."""
    parts = [
        SourcePart(1, "primary", "ef", MiB, 100 * MiB, "vfat"),
        SourcePart(2, "primary", "83", 101 * MiB, 400 * MiB, "ext4"),
    ]
    source_size = 512 * MiB
    target_size = 1024 * MiB
    plan = fit(parts, table="dos", source_size=source_size, target_size=target_size, sector=512)
    regions = [
        Region("outside", None, 0, source_size, "table"),
        Region("p1", 1, MiB, 100 * MiB, "partclone", "vfat", label="BOOT"),
        Region("p2", 2, 101 * MiB, 400 * MiB, "partclone", "ext4", label="root"),
    ]
    target = Disk("sdb", "/dev/sdb", target_size, 512, 512)
    source = Disk("sda", "/dev/sda", source_size, 512, 512, table="dos")
    restore = SimpleNamespace(
        image=SimpleNamespace(manifest=SimpleNamespace(table=TableRecord("dos"), regions=regions)),
        fit=plan,
        target=target,
    )
    clone = SimpleNamespace(
        source=source, regions=[RegionPlan(r, []) for r in regions], fit=plan, target=target
    )
    lines = clone_layout(clone)
    assert lines == restore_layout(restore)
    assert lines[0] == "DOS partition table"
    assert (
        lines[2].startswith("partition 2: ")
        and "ext4 root (partclone, grown from 419.4 MB; the filesystem grows)" in lines[2]
    )

"""Pilot tests of every screen over the fake engine (no root, no disks)."""

from __future__ import annotations

from kit.tui.fakes import BLANK, FakeBackend
from kit.tui.pilot import drive, fake_app, screen_text, until
from textual.pilot import Pilot
from textual.widgets import Button, Input

from tui.messages import DisksChanged
from tui.screens.clone import CloneScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.home import HomeScreen
from tui.screens.job import JobScreen
from tui.screens.repository import RepositoryScreen
from tui.screens.restore import RestoreScreen
from tui.screens.save import SaveScreen
from tui.screens.verify import VerifyScreen
from tui.widgets.disktable import DiskTable
from tui.widgets.errorline import ErrorLine
from tui.widgets.imagetable import ImageTable


def test_home_shows_disks_partitions_and_used_space() -> None:
    backend = FakeBackend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        await until(pilot, lambda: "61.0 GB" in screen_text(app), what="the used space")
        text = screen_text(app)
        for expected in (
            "Samsung SSD 860 EVO 500GB",
            "0K123456A",
            "500.1 GB",
            "sda",
            "WDC WD10EZEX",
            "repository",
            "Windows",
            "ntfs",
            "vfat FAT32",
            "all (raw)",
        ):
            assert expected in text, expected
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("down")
        await until(pilot, lambda: "no partition table" in screen_text(app))

    drive(app, scenario)


def test_disks_appear_and_vanish_live() -> None:
    backend = FakeBackend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        table = app.screen.query_one(DiskTable)
        await until(pilot, lambda: len(table.keys) == 3)
        backend.disks.remove(BLANK)
        app.post_message(DisksChanged())
        await until(pilot, lambda: table.keys == ["sda", "sdc"], what="sdb to vanish")
        backend.disks.append(BLANK)
        app.refresh_disks()
        await until(pilot, lambda: "sdb" in table.keys, what="sdb to come back")

    drive(app, scenario)


def test_save_runs_the_preflight_then_the_job() -> None:
    backend = FakeBackend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, SaveScreen))
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, SaveScreen)
        await until(pilot, lambda: screen.preflight is not None, what="the preflight")
        name = screen.query_one(Input)
        assert name.value == "Samsung-SSD-860-EVO-500GB-456A-2024-05-01"
        text = screen_text(app)
        assert "[WARN]" in text and "hibernated" in text and "Ready: up to" in text
        assert not screen.query_one("#start", Button).disabled
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        job = app.screen
        assert isinstance(job, JobScreen)
        await until(pilot, lambda: not job.running, what="the save to finish")
        text = screen_text(app)
        assert "Done: the save finished." in text
        assert "Not verified yet" in text and "What next" in text
        assert backend.ran == ["save"]
        await pilot.press("v")  # the offered verify of the new image
        await until(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen is not job)
        await until(pilot, lambda: not app.screen.running)  # type: ignore[attr-defined]
        assert backend.ran == ["save", "verify"]
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))

    drive(app, scenario)


def test_save_refused_by_a_stop_finding() -> None:
    backend = FakeBackend()
    backend.blocked = True
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        await pilot.press("s", "enter")
        screen = app.screen
        assert isinstance(screen, SaveScreen)
        await until(pilot, lambda: screen.preflight is not None)
        assert screen.query_one("#start", Button).disabled
        await pilot.press("enter", "f2")
        assert isinstance(app.screen, SaveScreen)
        assert "[STOP]" in screen_text(app) and "cannot start" in screen_text(app)
        assert backend.ran == []

    drive(app, scenario)


async def _to_restore_target(pilot: Pilot[int], app: object, target_row: int) -> RestoreScreen:
    await pilot.press("r")
    await until(pilot, lambda: isinstance(pilot.app.screen, RestoreScreen))
    screen = pilot.app.screen
    assert isinstance(screen, RestoreScreen)
    await until(pilot, lambda: len(screen.query_one(ImageTable).keys) == 2)
    await pilot.press("enter")
    await until(pilot, lambda: screen.image is not None)
    for _ in range(target_row + 1):  # the first row chooses no disk: move to one
        await pilot.press("down")
    await pilot.press("enter")
    return screen


def test_restore_asks_for_the_kernel_name() -> None:
    backend = FakeBackend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        await _to_restore_target(pilot, app, 1)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        text = screen_text(app)
        for expected in (
            "Restore will ERASE this disk",
            "WDC WD10EZEX-08WN4A0",
            "WD-WCC6Y3KX4571",
            "1.0 TB",
            "/dev/sdb",
            "type sdb",
            "4571",
            "partition 3: 523.2 GB ntfs Windows",
        ):
            assert expected in text, expected
        await pilot.press("s", "d", "a", "enter")  # the wrong disk
        assert isinstance(app.screen, ConfirmScreen)
        assert "You typed 'sda', which is not sdb or 4571" in screen_text(app)
        await pilot.press("s", "d", "b", "enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        await until(pilot, lambda: not app.screen.running)  # type: ignore[attr-defined]
        assert backend.ran == ["restore"]
        assert "Every chunk was re-hashed" in screen_text(app)

    drive(app, scenario)


def test_restore_confirmed_by_the_serials_last_four() -> None:
    backend = FakeBackend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        await _to_restore_target(pilot, app, 1)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        erase = app.screen.query_one("#erase", Button)
        assert erase.disabled
        await pilot.press("4", "5", "7")
        assert erase.disabled
        await pilot.press("1")
        assert not erase.disabled
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))

    drive(app, scenario)


def test_restore_refusal_is_one_sentence() -> None:
    backend = FakeBackend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        screen = await _to_restore_target(pilot, app, 2)  # sdc holds the repository
        line = screen.query_one(ErrorLine)
        await until(pilot, lambda: "holds the repository" in str(line.render()))
        assert isinstance(app.screen, RestoreScreen)
        assert "Traceback" not in screen_text(app)
        assert backend.ran == []

    drive(app, scenario)


def test_incomplete_image_is_never_offered() -> None:
    backend = FakeBackend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RestoreScreen))
        screen = app.screen
        assert isinstance(screen, RestoreScreen)
        await until(pilot, lambda: len(screen.query_one(ImageTable).keys) == 2)
        await pilot.press("down", "enter")
        assert screen.image is None
        assert "cannot be restored" in screen_text(app)

    drive(app, scenario)


def test_escape_on_the_confirmation_writes_nothing() -> None:
    backend = FakeBackend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        await _to_restore_target(pilot, app, 1)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("s", "d", "escape")
        await until(pilot, lambda: isinstance(app.screen, RestoreScreen))
        assert "Nothing was written to /dev/sdb" in screen_text(app)
        assert backend.ran == []

    drive(app, scenario)


def test_clone_plans_then_asks_the_same_question() -> None:
    backend = FakeBackend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CloneScreen))
        await pilot.press("enter")  # source: sda (the highlighted disk)
        await pilot.press("down", "down", "enter")  # target: sdb (below "no disk")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Clone will ERASE this disk" in screen_text(app)
        # the same words and sizes as a restore's confirmation
        assert "partition 3: 998.3 GB ntfs Windows (partclone, grown from 523.2 GB)" in screen_text(
            app
        )
        await pilot.press("s", "d", "b", "enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        await until(pilot, lambda: not app.screen.running)  # type: ignore[attr-defined]
        assert backend.ran == ["clone"]

    drive(app, scenario)


def test_clone_unavailable_says_so() -> None:
    backend = FakeBackend()
    backend.clone = False
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CloneScreen))
        assert "Clone is not available in this build." in screen_text(app)
        await pilot.press("enter", "down", "enter")
        assert isinstance(app.screen, CloneScreen) and backend.ran == []

    drive(app, scenario)


def test_verify_an_image_alone_and_against_a_disk() -> None:
    backend = FakeBackend()
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        for moves, expected in (([], "is intact"), (["down"], "/dev/sda holds the same")):
            await pilot.press("v")
            await until(pilot, lambda: isinstance(app.screen, VerifyScreen))
            screen = app.screen
            await until(pilot, lambda s=screen: len(s.query_one(ImageTable).keys) == 2)
            await pilot.press("enter", *moves, "enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen))
            await until(pilot, lambda: not app.screen.running)  # type: ignore[attr-defined]
            assert expected in screen_text(app)
            await pilot.press("h")
            await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        assert backend.ran == ["verify", "verify"]

    drive(app, scenario)


def test_repository_folder_and_partition() -> None:
    backend = FakeBackend()
    app = fake_app(backend, repo=None)

    async def scenario(pilot: Pilot[int]) -> None:
        assert "no repository chosen" in screen_text(app)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, RepositoryScreen))
        await until(pilot, lambda: "/dev/sda3" in screen_text(app))
        await pilot.press("down", "enter")  # the NTFS partition: mounted read-only by the app
        await until(pilot, lambda: app.session.repo.mount is not None)
        assert backend.mounted == ["/dev/sda3"]
        assert app.session.repo.path == "/run/appliance/repo-sda3/appliance-images"
        assert "mounted by the appliance" in screen_text(app)
        await pilot.press("f8")
        await until(pilot, lambda: app.session.repo.path is None)
        await pilot.click("#folder")
        await pilot.press("end", "ctrl+u", *"/tmp", "enter")
        await until(pilot, lambda: app.session.repo.path == "/tmp")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        assert "Repository: /tmp" in screen_text(app)

    drive(app, scenario)


def test_no_repository_is_one_sentence() -> None:
    backend = FakeBackend()
    app = fake_app(backend, repo=None)

    async def scenario(pilot: Pilot[int]) -> None:
        await pilot.press("r")
        await until(pilot, lambda: "No repository is chosen yet" in screen_text(app))

    drive(app, scenario)

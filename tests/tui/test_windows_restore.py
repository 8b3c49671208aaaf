"""The Restore screen lists a Windows system image found in the repository folder (a VHDX
made by qemu-img from a real ESP + MSR + NTFS loop disk, in Windows' folder layout) and
restores it through the same typed confirmation, with the real engine: the target is not
touched before its name is typed, and afterwards it holds the NTFS files, checked by ntfsfix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kit.diskbuild import MiB, sparse_file
from kit.diskcompare import file_tree, partition_nodes, run
from kit.loops import Loops
from kit.tui.pilot import drive, screen_text, until
from kit.winbackup import build_windows_disk, make_backup_folder
from textual.pilot import Pilot

from tui.app import ApplianceApp
from tui.backend import EngineBackend
from tui.look import Look
from tui.screens.confirm import ConfirmScreen
from tui.screens.job import JobScreen
from tui.screens.restore import RestoreScreen
from tui.widgets.disktable import DiskTable
from tui.widgets.imagetable import ImageTable, restorable

pytestmark = pytest.mark.root

NAME = "PC-LAB-07 2026-11-30 10:15:00"


def test_a_windows_system_image_is_listed_and_restored_after_its_confirmation(
    tmp_path: Path, loops: Loops, monkeypatch: pytest.MonkeyPatch
) -> None:
    views = tmp_path / "views"
    views.mkdir()
    monkeypatch.setenv("APPLIANCE_TMP", str(views))
    source = build_windows_disk(loops, tmp_path / "windows.img", files=True)
    vhdx = tmp_path / "disk.vhdx"
    run("qemu-img", "convert", "-f", "raw", "-O", "vhdx", source, str(vhdx))
    make_backup_folder(tmp_path / "shelf", "PC-LAB-07", "2026-11-30 101500", [vhdx])
    ntfs_before = file_tree(partition_nodes(source)[3], "ntfs")
    target = loops.attach(sparse_file(tmp_path, "ssd.img", 256 * MiB))
    name = os.path.basename(target)
    backend = EngineBackend(include_loop=True, only={name})
    [row] = backend.images(str(tmp_path / "shelf"))
    assert row.name == NAME and row.kind == "Windows system image" and restorable(row)
    app = ApplianceApp(
        backend,
        look=Look(ascii=False, console=False),
        repo=str(tmp_path / "shelf"),
        watch=False,
        log_path=str(tmp_path / "log"),
        blink=False,
    )

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 1, 30)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RestoreScreen))
        restore = app.screen
        assert isinstance(restore, RestoreScreen)
        await until(pilot, lambda: len(restore.query_one(ImageTable).keys) == 1, 60)
        assert "Windows" in screen_text(app), screen_text(app)
        await pilot.press("enter")
        await until(pilot, lambda: restore.image is not None)
        disks = restore.query_one(DiskTable)
        await until(pilot, lambda: len(disks.disks) == 1, 30)
        while disks.current_key() != name:  # below the "(choose a disk)" row
            await pilot.press("down")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 120, "the plan")
        await until(pilot, lambda: "Windows system image" in screen_text(app))
        text = screen_text(app)
        assert "Windows system image" in text and "Microsoft reserved" in text, text
        assert list(views.iterdir()) == [], "the plan holds no raw view open"
        await pilot.press("enter")  # Enter alone never confirms
        assert isinstance(app.screen, ConfirmScreen)
        with open(target, "rb") as blank:
            assert blank.read(MiB) == bytes(MiB), "written before the confirmation"
        await pilot.press(*name, "enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        job = app.screen
        assert isinstance(job, JobScreen)
        await until(pilot, lambda: not job.running, 240, "the restore")
        assert "Done: the restore finished." in screen_text(app), screen_text(app)

    drive(app, scenario)
    parts = partition_nodes(target)
    run("ntfsfix", "-n", parts[3])
    assert file_tree(parts[3], "ntfs") == ntfs_before
    assert list(views.iterdir()) == []
    listing = json.loads(run("losetup", "--list", "--json").stdout or '{"loopdevices": []}')
    assert not [d for d in listing["loopdevices"] if str(views) in (d.get("back-file") or "")]

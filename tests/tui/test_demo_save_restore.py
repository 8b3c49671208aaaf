"""The whole story in demo mode, through the interface: save the laptop, restore it onto the
new SSD (typing its name), verify it, then check the restored disk itself with the real
tools: sfdisk's table, e2fsck, and the files on each filesystem."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.tui.pilot import drive, screen_text, until
from textual.pilot import Pilot

from tui.app import ApplianceApp
from tui.backend import EngineBackend
from tui.demo import demo_session
from tui.look import Look
from tui.screens.confirm import ConfirmScreen
from tui.screens.home import HomeScreen
from tui.screens.job import JobScreen
from tui.screens.restore import RestoreScreen
from tui.screens.save import SaveScreen
from tui.widgets.disktable import DiskTable
from tui.widgets.imagetable import ImageTable

pytestmark = pytest.mark.root


def sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def table(node: str) -> dict[str, object]:
    """sfdisk's view of the table, without what names the device or depends on its size."""
    data = json.loads(sh("sfdisk", "--json", node))["partitiontable"]
    parts = [{k: v for k, v in p.items() if k != "node"} for p in data["partitions"]]
    return {
        "label": data["label"],
        "id": data["id"],
        "sectorsize": data.get("sectorsize"),
        "partitions": parts,
    }


def nodes(node: str) -> dict[int, str]:
    data = json.loads(sh("sfdisk", "--json", node))["partitiontable"]
    out = {}
    for number, part in enumerate(data["partitions"], start=1):
        out[number] = part["node"]
    return out


@contextlib.contextmanager
def mounted(argv: list[str], where: Path) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run([*argv, str(where)], check=True, capture_output=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False, capture_output=True)


def tree(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if path.is_symlink() or not path.is_file():
                continue
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


async def pick(pilot: Pilot[int], table_widget: DiskTable, key: str) -> None:
    for _ in range(10):
        if table_widget.current_key() == key:
            return
        await pilot.press("down")
    raise AssertionError(f"{key} is not in the list")


def test_save_then_restore_in_demo_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_DEMO_DIR", str(tmp_path))
    with demo_session() as demo:
        assert demo.disks is not None
        laptop = os.path.basename(demo.disks.laptop)
        ssd = os.path.basename(demo.disks.ssd)
        backend = EngineBackend(include_loop=True, labels=demo.labels, only=set(demo.labels))
        app = ApplianceApp(
            backend,
            look=Look(ascii=False, console=False),
            repo=demo.repo,
            demo=True,
            log_path=str(tmp_path / "log"),
            blink=False,
        )

        async def scenario(pilot: Pilot[int]) -> None:
            await until(
                pilot,
                lambda: len(app.screen.query_one(DiskTable).keys) == 3,
                what="the three demo disks",
            )
            await pick(pilot, app.screen.query_one(DiskTable), laptop)
            # -- save ------------------------------------------------------------------
            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, SaveScreen))
            save = app.screen
            assert isinstance(save, SaveScreen)
            await pilot.press("enter")
            await until(pilot, lambda: save.preflight is not None, 60, "the preflight")
            assert save.preflight is not None and not save.preflight.blocked
            assert "Ready: up to" in screen_text(app)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen))
            job = app.screen
            assert isinstance(job, JobScreen)
            await until(pilot, lambda: not job.running, 120, "the save")
            assert "Done: the save finished." in screen_text(app), screen_text(app)
            await pilot.press("h")
            await until(pilot, lambda: isinstance(app.screen, HomeScreen))
            # -- restore ---------------------------------------------------------------
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, RestoreScreen))
            restore = app.screen
            assert isinstance(restore, RestoreScreen)
            await until(pilot, lambda: len(restore.query_one(ImageTable).keys) == 1)
            await pilot.press("enter")
            await until(pilot, lambda: restore.image is not None)
            await until(pilot, lambda: len(restore.query_one(DiskTable).disks) == 3)
            await pick(pilot, restore.query_one(DiskTable), ssd)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 60, "the plan")
            for _ in range(20):  # Enter alone never confirms
                await pilot.press("enter")
            assert isinstance(app.screen, ConfirmScreen)
            with open(f"/dev/{ssd}", "rb") as blank:  # nothing was written: still all zeros
                assert blank.read(1024 * 1024) == bytes(1024 * 1024)
            await pilot.press(*ssd, "enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen))
            job = app.screen
            assert isinstance(job, JobScreen)
            await until(pilot, lambda: not job.running, 120, "the restore")
            assert "Done: the restore finished." in screen_text(app), screen_text(app)
            # -- verify the disk against the image (the offered next step) ------------------
            await pilot.press("v")
            await until(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen is not job)
            verify = app.screen
            assert isinstance(verify, JobScreen)
            await until(pilot, lambda: not verify.running, 120, "the verify")
            assert "holds the same data as image" in screen_text(app), screen_text(app)
            await pilot.press("h")
            await until(pilot, lambda: isinstance(app.screen, HomeScreen))

        drive(app, scenario)

        # -- the restored disk itself, with the real tools ---------------------------------
        source, target = demo.disks.laptop, demo.disks.ssd
        before, after = table(source), table(target)
        assert after["label"] == before["label"] == "gpt" and after["id"] == before["id"]
        old_parts, new_parts = before["partitions"], after["partitions"]
        assert isinstance(old_parts, list) and isinstance(new_parts, list)
        assert len(new_parts) == len(old_parts) == 5
        for old, new in zip(old_parts, new_parts, strict=True):
            same = {k: v for k, v in old.items() if k not in ("start", "size")}
            assert {k: v for k, v in new.items() if k not in ("start", "size")} == same
            assert new["size"] >= old["size"]  # the larger SSD: kept, or grown by the fit
        src, dst = nodes(source), nodes(target)
        subprocess.run(["e2fsck", "-fn", dst[4]], check=True, capture_output=True)
        with (
            mounted(["mount", "-o", "ro,noload", src[4]], tmp_path / "a4") as a,
            mounted(["mount", "-o", "ro,noload", dst[4]], tmp_path / "b4") as b,
        ):
            before, after = tree(a), tree(b)
            assert len(before) > 100 and after == before
        with (
            mounted(["ntfs-3g", "-o", "ro", src[3]], tmp_path / "a3") as a,
            mounted(["ntfs-3g", "-o", "ro", dst[3]], tmp_path / "b3") as b,
        ):
            before, after = tree(a), tree(b)
            assert "Users/Demo/photo.raw" in before and after == before
        efi = ["mcopy", "-n", "-i"]
        env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
        a_efi = subprocess.run(
            [*efi, src[1], "::EFI/BOOT/BOOTX64.EFI", "-"], capture_output=True, check=True, env=env
        ).stdout
        b_efi = subprocess.run(
            [*efi, dst[1], "::EFI/BOOT/BOOTX64.EFI", "-"], capture_output=True, check=True, env=env
        ).stdout
        assert len(a_efi) == 700_000 and a_efi == b_efi
        assert "swap" in sh("blkid", "-p", "-o", "value", "-s", "TYPE", dst[5])

"""The bare-console look (ASCII only), errors as sentences, and disks that come and go."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest
from kit.tui.fakes import FakeBackend
from kit.tui.pilot import drive, fake_app, screen_text, until
from textual.pilot import Pilot

from appliance.errors import DeviceError
from tui.hotplug import DiskWatcher, sysfs_signature
from tui.look import Look, ascii_char, detect, key_label, to_ascii
from tui.screens.confirm import ConfirmScreen
from tui.screens.job import JobScreen
from tui.widgets.disktable import DiskTable


def test_ascii_replacements_keep_the_width() -> None:
    assert to_ascii("╭─┤├┼━╸│╰") == "+-+++--|+"
    assert to_ascii("▁▔▊▐█░") == "  ||#."
    assert to_ascii("↑↓…✓é⏎") == "^v.ve~"
    assert ascii_char("漢") == "??"  # two cells stay two cells
    assert key_label("enter") == "Enter" and key_label("ctrl+q") == "^Q"
    assert key_label("escape") == "Esc" and key_label("s") == "s"


def test_detect_follows_term_and_locale() -> None:
    assert detect({"TERM": "linux", "LANG": "C.UTF-8"}) == Look(ascii=True, console=True)
    assert detect({"TERM": "xterm-256color", "LANG": "C.UTF-8"}) == Look(False, False)
    assert detect({"TERM": "xterm", "LANG": "C"}).ascii
    env = {"TERM": "linux", "LANG": "C.UTF-8", "APPLIANCE_TUI_ASCII": "0"}
    assert detect(env) == Look(ascii=False, console=True)


@pytest.mark.parametrize("size", [(80, 25), (120, 40)])
def test_console_look_puts_only_ascii_on_screen(size: tuple[int, int]) -> None:
    app = fake_app(look=Look(ascii=True, console=True))

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        for keys in (["r"], ["enter", "down", "enter"]):
            await pilot.press(*keys)
            await pilot.pause(0.2)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        text = screen_text(app)
        assert text.isascii(), [c for c in text if not c.isascii()]
        assert "+-" in text and "ERASE" in text

    drive(app, scenario, size)


def test_a_failed_job_is_a_sentence_with_the_log(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend(fail=RuntimeError("a bug deep inside"))
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        await pilot.press("v")
        await pilot.pause(0.3)
        await pilot.press("enter", "enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        await until(pilot, lambda: not app.screen.running)  # type: ignore[attr-defined]
        text = screen_text(app)
        assert "Failed: the verify did not finish." in text
        assert "An internal error stopped this; the details are in /var/log/appliance.log" in text
        assert "Traceback" not in text and "a bug deep inside" not in text

    with caplog.at_level(logging.ERROR, logger="tui"):
        drive(app, scenario)
    assert any(r.exc_info and "a bug deep inside" in str(r.exc_info[1]) for r in caplog.records)


def test_an_engine_error_is_its_own_sentence() -> None:
    backend = FakeBackend(fail=DeviceError("/dev/sdb is gone; was it unplugged?"))
    app = fake_app(backend)

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)
        for keys in (["r"], ["enter", "down", "down", "enter"], ["s", "d", "b", "enter"]):
            await pilot.press(*keys)
            await pilot.pause(0.2)
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        await until(pilot, lambda: not app.screen.running)  # type: ignore[attr-defined]
        text = screen_text(app)
        assert "! /dev/sdb is gone; was it unplugged?" in text
        assert "partly overwritten" in text  # the restore had started writing

    drive(app, scenario)


def test_a_bug_in_a_screen_leaves_a_sentence_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = fake_app()

    async def scenario(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: len(app.screen.query_one(DiskTable).keys) == 3)

        def boom() -> None:
            raise RuntimeError("a bug in a screen")

        app.screen._show_parts = boom  # type: ignore[attr-defined]
        await pilot.press("down")
        await pilot.pause(0.3)

    with pytest.raises(RuntimeError):
        drive(app, scenario)
    printed = " ".join(capsys.readouterr().err.split())
    assert (
        "An internal error stopped the interface; the details are in "
        "/var/log/appliance.log." in printed
    )
    assert "Traceback" not in printed and "a bug in a screen" not in printed


def fake_sysfs(root: Path, disks: dict[str, int]) -> None:
    for name, size in disks.items():
        folder = root / "block" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "size").write_text(f"{size}\n")


def test_sysfs_poll_hears_a_disk_arrive_and_leave(tmp_path: Path) -> None:
    fake_sysfs(tmp_path, {"sda": 1000})
    heard = threading.Event()
    watcher = DiskWatcher(heard.set, interval=0.05, sysfs=str(tmp_path), use_udev=False)
    watcher.start()
    try:
        assert watcher.mode == "poll"
        assert not heard.wait(0.3)
        fake_sysfs(tmp_path, {"sdb": 2000})
        assert heard.wait(2)
        heard.clear()
        watcher.pause()
        (tmp_path / "block" / "sdb" / "size").unlink()
        (tmp_path / "block" / "sdb").rmdir()
        assert not heard.wait(0.3)  # paused while a job runs
        watcher.resume()
        assert heard.wait(2)
    finally:
        watcher.stop()
    assert sysfs_signature(str(tmp_path)) == (("sda", "1000", "", ""),)


@pytest.mark.root
def test_a_plugged_disk_appears_and_vanishes(tmp_path: Path) -> None:
    import subprocess

    from tui.backend import EngineBackend

    image = tmp_path / "plugged.img"
    with open(image, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    backend = EngineBackend(include_loop=True, only=set())  # no other loop device
    app = fake_app(backend)  # type: ignore[arg-type]
    app._watch = True
    found: list[str] = []

    async def scenario(pilot: Pilot[int]) -> None:
        table = app.screen.query_one(DiskTable)
        node = subprocess.run(
            ["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=True
        ).stdout.strip()
        found.append(node)
        name = os.path.basename(node)
        assert backend.only is not None
        backend.only.add(name)
        await until(pilot, lambda: name in table.keys, 30, f"{name} to appear")
        subprocess.run(["losetup", "-d", node], check=True)
        found.clear()
        await until(pilot, lambda: name not in table.keys, 30, f"{name} to vanish")

    try:
        drive(app, scenario)
    finally:
        for node in found:
            subprocess.run(["losetup", "-d", node], capture_output=True)

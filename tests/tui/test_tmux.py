"""`appliance tui --demo` in a real terminal (tmux, TERM=linux like a bare console, 80x25):
type the keys of a save, a restore and a browse of the saved image, read the screen with
capture-pane."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
]

ROOT = Path(__file__).resolve().parents[2]
SESSION = f"appliance-tui-test-{os.getpid()}"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def keys(*names: str) -> None:
    for name in names:
        tmux("send-keys", "-t", SESSION, name)
        time.sleep(0.15)


def wait_for(text: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        shown = screen()
        if text in shown:
            return shown
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never appeared; the screen is:\n{shown}")
        time.sleep(0.2)


def demo_rows(shown: str) -> list[tuple[str, str]]:
    """(kernel name, demo label) of each demo disk row, top to bottom."""
    return re.findall(
        r"^ *(loop\d+) +Loop device .*?(laptop|new SSD|USB stick) \(demo", shown, re.MULTILINE
    )


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Path]:
    env = {
        "APPLIANCE_DEMO_DIR": str(tmp_path),
        "APPLIANCE_LOG": str(tmp_path / "log"),
        "TERM": "linux",
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(ROOT),
    }
    command = " ".join(f"{k}={v}" for k, v in env.items())
    tmux(
        "new-session",
        "-d",
        "-s",
        SESSION,
        "-x",
        "80",
        "-y",
        "25",
        "-c",
        str(ROOT),
        f"env {command} {sys.executable} -m appliance.cli tui --demo; echo EXITED=$?; sleep 600",
    )
    try:
        yield tmp_path
    finally:
        with_app = "EXITED=" not in screen()
        if with_app:  # the test failed midway: quit the app so that the demo cleans up
            keys("Escape", "Escape", "C-q")
            time.sleep(3)
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
        for line in subprocess.run(
            ["losetup", "-a"], capture_output=True, text=True
        ).stdout.splitlines():
            if str(tmp_path) in line:  # only loop devices of this test's own demo files
                subprocess.run(["losetup", "-d", line.split(":")[0]], capture_output=True)


def test_save_restore_and_browse_typed_in_a_terminal(session: Path) -> None:
    wait_for("Partitions of")
    shown = wait_for("USB stick (demo")
    rows = demo_rows(shown)
    names = [label for _, label in rows]
    assert sorted(names) == ["USB stick", "laptop", "new SSD"], shown
    laptop = next(name for name, label in rows if label == "laptop")
    ssd = next(name for name, label in rows if label == "new SSD")
    keys(*["Down"] * names.index("laptop"))
    # -- save -----------------------------------------------------------------------------
    keys("s")
    wait_for("1. The disk to save")
    keys("Enter")
    wait_for("Ready: up to", 60)
    keys("Enter")
    shown = wait_for("Done: the save finished.", 120)
    assert f"/dev/{laptop}" in shown
    assert shown.isascii(), "a bare console gets ASCII only"
    keys("h")
    wait_for("Partitions of")
    # -- restore --------------------------------------------------------------------------
    keys("r")
    wait_for("ready")
    keys("Enter")
    keys(*["Down"] * (names.index("new SSD") + 1))  # below "(choose a disk)"
    keys("Enter")
    shown = wait_for("To erase it, type", 60)
    assert f"type {ssd} (its kernel name)" in shown and "Restore will ERASE" in shown
    keys("Enter", "Enter", "Enter")
    assert "Nothing was typed" in wait_for("nothing is written")
    assert "Done:" not in screen()
    for char in ssd:
        keys(char)
    keys("Enter")
    shown = wait_for("Done: the restore finished.", 120)
    assert f"/dev/{ssd}" in shown and shown.isascii()
    # -- browse the saved image: its NTFS partition, mounted read-only for real ------------
    keys("h")
    wait_for("Partitions of")
    keys("b")
    wait_for("1. The image")
    keys("Enter")
    shown = wait_for("can be browsed", 60)
    assert "ntfs" in shown and "Windows" in shown, shown
    keys("Down", "Down", "Enter")  # partition 3: under ESP and the reserved partition
    shown = wait_for("Users", 60)
    assert "Copy files (nothing on any disk is replaced)" in shown and "/ (partition 3)" in shown
    assert shown.isascii(), shown  # the tree's folder icons too
    assert any("appliance-image" in line for line in Path("/proc/mounts").read_text().splitlines())
    keys("Escape")
    wait_for("2. The partition to look into")
    keys("Escape")
    # -- leave: the demo disks go away, and every mount of the browse with them -----------
    keys("h")
    wait_for("Partitions of")
    keys("q")
    wait_for("EXITED=0", 30)
    leftovers = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert str(session) not in leftovers
    assert not list(session.glob("appliance-demo-*"))
    assert "appliance-image" not in Path("/proc/mounts").read_text()

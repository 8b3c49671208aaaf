"""A copy-on-write view whose job was killed with its whole process group (the view's own
watcher died with it) is a dead FUSE mount: every access fails with ENOTCONN. The next view
made in the same folder clears it (unmounts it, removes its folder) and leaves a live view of
another job alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.disk.deadmounts import is_dead_mount
from appliance.io.cowview import CowView

pytestmark = pytest.mark.root

SIZE = 8 * 1024 * 1024


def start_view(folder: Path, base: Path) -> subprocess.Popen[bytes]:
    """The view process as CowView starts it, in its own process group."""
    (folder / "view").mkdir(parents=True)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "appliance.io.cowview", "--parent", str(os.getpid()),
            "--mount", str(folder / "view"), "--overlay", str(folder / "overlay"),
            "--size", str(SIZE), "--device", str(base), "--offset", "0",
        ],
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not os.path.ismount(folder / "view"):
        assert time.monotonic() < deadline, "the view did not come up"
        time.sleep(0.1)
    return proc


def mounted(path: Path) -> bool:
    return any(f" {path} " in line for line in open("/proc/mounts"))


def test_a_killed_jobs_view_is_cleared_by_the_next_view(tmp_path: Path) -> None:
    base = tmp_path / "base.img"
    base.write_bytes(os.urandom(SIZE))
    work = tmp_path / "work"
    dead, live = work / "appliance-cow-killed", work / "appliance-cow-running"
    killed = start_view(dead, base)
    running = start_view(live, base)
    try:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=20)
        assert is_dead_mount(dead / "view")
        with (
            CowView(SIZE, device=str(base), workdir=str(work)) as view,
            open(view.path, "rb") as data,
        ):
            assert data.read(4096) == base.read_bytes()[:4096]
        assert not dead.exists() and not mounted(dead / "view")
        assert mounted(live / "view") and not is_dead_mount(live / "view")
    finally:
        for proc in (killed, running):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
        for folder in (dead, live):
            if mounted(folder / "view"):
                subprocess.run(["umount", "--lazy", str(folder / "view")], check=False)

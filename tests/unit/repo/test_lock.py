import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.errors import RepositoryLocked
from appliance.repo.lock import RepoLock, describe_owner, process_start_time


def test_second_writer_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with (
        RepoLock(tmp_path / "lock", "save"),
        pytest.raises(RepositoryLocked, match="in use by another job"),
    ):
        RepoLock(tmp_path / "lock", "gc").acquire()
    assert not (tmp_path / "lock").exists()


def test_lock_of_a_dead_process_is_taken_over(tmp_path) -> None:  # type: ignore[no-untyped-def]
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start_time(child.pid)
    child.wait()
    (tmp_path / "lock").write_text(
        json.dumps(
            {"pid": child.pid, "host": socket.gethostname(), "start": start, "command": "save"}
        )
    )
    with RepoLock(tmp_path / "lock", "save") as lock:
        assert lock.held
        owner = json.loads((tmp_path / "lock").read_text())
        assert owner["pid"] == os.getpid()


def test_lock_of_another_host_is_respected(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "lock").write_text(
        json.dumps({"pid": 1, "host": "elsewhere", "start": "1", "command": "save"})
    )
    with pytest.raises(RepositoryLocked, match="elsewhere"):
        RepoLock(tmp_path / "lock", "save").acquire()


def test_an_empty_lock_is_stale_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "lock").write_text("")
    started = time.monotonic()
    with RepoLock(tmp_path / "lock", "save") as lock:
        assert lock.held
    assert time.monotonic() - started < 5  # the grace is a moment, not 30 s


def test_a_lock_of_a_zombie_is_stale(tmp_path) -> None:  # type: ignore[no-untyped-def]
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start_time(child.pid)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.02)  # exited, not reaped: a zombie that keeps its pid and start time
    try:
        assert process_start_time(child.pid) == start
        (tmp_path / "lock").write_text(
            json.dumps(
                {"pid": child.pid, "start": start, "host": socket.gethostname(), "command": "save"}
            )
        )
        with RepoLock(tmp_path / "lock", "gc") as lock:
            assert lock.held
    finally:
        child.wait()


def test_a_lock_with_missing_keys_never_says_none(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "lock").write_text(json.dumps({"host": "elsewhere"}))
    with pytest.raises(RepositoryLocked) as caught:
        RepoLock(tmp_path / "lock", "save").acquire()
    assert "None" not in str(caught.value) and "on elsewhere" in str(caught.value)
    assert describe_owner({}) == "its owner is not recorded"


def test_ctrl_c_while_the_lock_is_filled_leaves_no_lock(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """On a slow share the lock file exists for a while before its contents reach the
    server: a Ctrl-C then must not leave a lock that names nobody."""

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        RepoLock(tmp_path / "lock", "save").acquire()
    assert not (tmp_path / "lock").exists()

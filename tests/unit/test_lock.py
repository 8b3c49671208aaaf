import json
import os
import socket
import subprocess
import sys

import pytest

from appliance.errors import RepositoryLocked
from appliance.lock import RepoLock, process_start_time


def test_second_writer_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with RepoLock(tmp_path / "lock", "save"), \
            pytest.raises(RepositoryLocked, match="in use by another job"):
        RepoLock(tmp_path / "lock", "gc").acquire()
    assert not (tmp_path / "lock").exists()


def test_lock_of_a_dead_process_is_taken_over(tmp_path) -> None:  # type: ignore[no-untyped-def]
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start_time(child.pid)
    child.wait()
    (tmp_path / "lock").write_text(json.dumps({"pid": child.pid, "host": socket.gethostname(),
                                               "start": start, "command": "save"}))
    with RepoLock(tmp_path / "lock", "save") as lock:
        assert lock.held
        owner = json.loads((tmp_path / "lock").read_text())
        assert owner["pid"] == os.getpid()


def test_lock_of_another_host_is_respected(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "start": "1",
                                               "command": "save"}))
    with pytest.raises(RepositoryLocked, match="elsewhere"):
        RepoLock(tmp_path / "lock", "save").acquire()

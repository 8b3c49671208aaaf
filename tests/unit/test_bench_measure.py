"""The benchmark's memory sampler tells a child that still shares its parent's memory."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.measure import shares_memory


def test_a_process_shares_its_memory_with_itself_and_not_with_a_child_it_started() -> None:
    assert shares_memory(os.getpid(), os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        assert not shares_memory(child.pid, os.getpid())
        assert not shares_memory(os.getpid(), os.getppid())
    finally:
        child.kill()
        child.wait()

"""A stop (Ctrl-C or SIGTERM) is answered as a stop, exit 130, even when a tool of the job died
of the same Ctrl-C (it reaches the whole foreground group) and its failure reached the job
first; without a stop, that failure is the answer."""

from __future__ import annotations

import subprocess
import sys

import pytest

# The real command line with its dispatcher swapped for a job whose tool fails: after a
# Ctrl-C the job's own clean-up saw (as a restore's raw view does when qemu-storage-daemon
# dies of it), after a SIGTERM, or with no signal at all.
PROGRAM = """
import importlib, os, signal, sys, time
from appliance.errors import ToolFailed
cli = importlib.import_module("appliance.cli.main")
signal.signal(signal.SIGINT, signal.default_int_handler)  # as on a terminal, wherever run

def dispatch(args):
    how = args.command
    if how == "disks":  # Ctrl-C, then the clean-up's tool fails
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            raise ToolFailed("qemu-storage-daemon exited with status 1.")
    if how == "images":  # SIGTERM, then the tool fails
        os.kill(os.getpid(), signal.SIGTERM)
        while not cli.STOPPED.is_set():
            time.sleep(0.01)
    raise ToolFailed("qemu-storage-daemon exited with status 1.")

cli.dispatch = dispatch
sys.exit(cli.main(sys.argv[1:]))
"""


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("command", ["disks", "images"], ids=["ctrl-c", "sigterm"])
def test_a_tool_that_died_of_the_stop_is_answered_as_the_stop(command: str) -> None:
    done = run_cli(command, "--repo", "/nowhere") if command == "images" else run_cli(command)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "appliance: Stopped by the user."


def test_without_a_stop_the_tools_failure_is_the_answer() -> None:
    done = run_cli("gc", "--repo", "/nowhere")
    assert done.returncode == 11, done.stderr
    assert "qemu-storage-daemon exited with status 1." in done.stderr

"""One logging setup: engine records go to the log file, never as bare lines on the terminal;
a bug is one sentence that names the log file, exit 70, its traceback in the file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.logsetup import report_internal_error, setup_logging

# The command line with its dispatcher swapped for one that logs like the engine, or fails
# like a bug: everything around it (main's logging setup and error handling) is the real one.
PROGRAM = """
import importlib, logging, sys
cli = importlib.import_module("appliance.cli.main")

def dispatch(args):
    logging.getLogger("appliance.disk.fsprobe").warning("blkid finds two signatures on /dev/sdz")
    if args.command == "gc":
        raise RuntimeError("a bug deep inside")
    return 0

cli.dispatch = dispatch
sys.exit(cli.main(sys.argv[1:]))
"""


def run_cli(log: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "APPLIANCE_LOG": str(log)}
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_an_engine_warning_goes_to_the_log_not_the_terminal(tmp_path: Path) -> None:
    log = tmp_path / "appliance.log"
    proc = run_cli(log, "disks")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout == ""
    lines = log.read_text().splitlines()
    assert len(lines) == 1, lines
    assert " cli appliance.disk.fsprobe WARNING blkid finds two signatures on /dev/sdz" in lines[0]


def test_an_internal_error_is_one_sentence_naming_the_log(tmp_path: Path) -> None:
    log = tmp_path / "appliance.log"
    proc = run_cli(log, "gc", "--repo", str(tmp_path))
    assert proc.returncode == 70
    assert proc.stderr.splitlines() == [
        f"appliance: An internal error stopped the job; the details are in {log}."
    ]
    text = log.read_text()
    assert "Traceback" in text and "RuntimeError: a bug deep inside" in text
    assert " cli appliance ERROR internal error, appliance " in text


def test_an_unwritable_log_is_said_in_the_sentence(tmp_path: Path) -> None:
    log = tmp_path / "no-such-folder" / "appliance.log"
    proc = run_cli(log, "gc", "--repo", str(tmp_path))
    assert proc.returncode == 70
    lines = proc.stderr.splitlines()
    assert lines == [
        f"appliance: An internal error stopped the job; the log file {log} cannot be written."
    ]


@pytest.fixture
def log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "appliance.log"
    monkeypatch.setenv("APPLIANCE_LOG", str(log))
    return log


def test_report_follows_the_log_file_named_now(
    log_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A setup made for another file earlier in the process does not hide the report."""
    monkeypatch.setenv("APPLIANCE_LOG", str(log_file.with_name("earlier.log")))
    setup_logging("tui")
    monkeypatch.setenv("APPLIANCE_LOG", str(log_file))
    try:
        raise ValueError("no such screen")
    except ValueError as exc:
        sentence = report_internal_error(exc, "the interface", "tui")
    assert sentence == f"An internal error stopped the interface; the details are in {log_file}."
    text = log_file.read_text()
    assert " tui tui ERROR internal error" in text and "ValueError: no such screen" in text
    assert "no such screen" not in log_file.with_name("earlier.log").read_text()

"""export and save --to: command lines that are wrong get one sentence and exit 2 before any
disk or repository is touched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["save", "sda", "--to", "x.img", "--repo", "r", "--image", "i"], "not both"),
        (["save", "sda", "--to", "x.img", "--resume"], "--resume goes with --repo"),
        (["save", "sda", "--to", "x.img", "--create"], "--create goes with --repo"),
        (["save", "sda", "--repo", "r", "--image", "i", "--force"], "--force goes with --to"),
        (["save", "sda", "--repo", "r"], "are required, or --to FILE"),
        (["export", "--repo", "r", "--image", "i", "disk.iso"], "must end with one of"),
        (["export", "--repo", "r", "--image", "i"], "required"),
    ],
)
def test_wrong_command_lines(args: list[str], words: str, tmp_path: Path) -> None:
    proc = run(*args)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("appliance: "), proc.stderr
    assert words in lines[0]
    assert "Traceback" not in proc.stderr


def test_export_of_a_missing_repository(tmp_path: Path) -> None:
    proc = run("export", "--repo", str(tmp_path / "none"), "--image", "i", str(tmp_path / "a.img"))
    assert proc.returncode == 6 and "does not exist" in proc.stderr
    assert list(tmp_path.iterdir()) == []

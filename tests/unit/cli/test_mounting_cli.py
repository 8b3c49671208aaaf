"""mount, umount and files: command lines that are wrong get one sentence and exit 2 before
anything is mounted; a folder path of `files` never leads out of the partition."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appliance.cli.mounting import inside
from appliance.errors import UsageError


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["mount", "--repo", "r", "--file", "f.img", "/tmp"], "not both"),
        (["mount", "--repo", "r", "/tmp"], "Name the image with --repo DIR --image NAME"),
        (["files", "--image", "i"], "Name the image with --repo DIR --image NAME"),
        (["files", "--file", "/nonexistent/disk.qcow2"], "There is no file"),
        (["mount", "--repo", "ssh://host/srv", "--image", "i", "/tmp"], "file server"),
        (["umount", "/nonexistent-folder-of-no-mount"], "Nothing is mounted at"),
    ],
)
def test_wrong_command_lines_get_one_sentence(args: list[str], words: str, tmp_path: Path) -> None:
    proc = run(*args)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_path_is_a_folder_inside_the_partition(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "data" / "deep").mkdir(parents=True)
    (root / "data" / "file").write_text("x")
    (root / "up").symlink_to("/etc")
    (root / "inner").symlink_to("data/deep")
    assert inside(root, "/") == root.resolve()
    assert inside(root, "data/deep/") == (root / "data" / "deep").resolve()
    assert inside(root, "/inner") == (root / "data" / "deep").resolve()
    for path, words in [
        ("/up", "leads outside"),
        ("../..", "leads outside"),
        ("/data/file", "is a file"),
        ("/missing", "There is no /missing"),
    ]:
        with pytest.raises(UsageError, match=words):
            inside(root, path)

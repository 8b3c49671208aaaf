"""`appliance extract` at the opener seam: a plain folder stands for the mounted partition."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from appliance.cli.main import main
from appliance.errors import WARNINGS_EXIT
from appliance.jobs import extract as extract_job
from appliance.jobs.extract import ImageWhere


@pytest.fixture
def partition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "part"
    (root / "Documents").mkdir(parents=True)
    (root / "Documents/a.txt").write_text("a")
    os.mkfifo(root / "Documents/pipe")
    seen: list[tuple[ImageWhere, int]] = []

    @contextmanager
    def fake_mounted(where: ImageWhere, number: int, stop: threading.Event) -> Iterator[Path]:
        seen.append((where, number))
        yield root

    monkeypatch.setattr(extract_job, "mounted", fake_mounted)
    return root


def test_extract_reports_skips_with_exit_20_and_json(
    partition: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --file names a file on another filesystem than the destination (/dev: devtmpfs)
    args = ["extract", "--file", "/dev/null", "--partition", "2", "/Documents"]
    code = main([*args, "--to", str(tmp_path / "out"), "--json", "--progress", "none"])
    assert code == WARNINGS_EXIT
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["type"] == "result" and result["command"] == "extract"
    assert (result["files"], result["ok"]) == (1, False)
    assert result["skipped"] == [
        {"path": "/Documents/pipe", "why": "a fifo (named pipe) is not copied."}
    ]
    assert (tmp_path / "out/Documents/a.txt").read_text() == "a"

    code = main([*args, "--to", str(tmp_path / "out"), "--progress", "none"])
    out, err = capsys.readouterr()
    out = " ".join(out.split())  # wrapped at 80 columns
    assert code == WARNINGS_EXIT
    assert "Renamed: /Documents is stored as" in out and "Documents (2)" in out
    assert err.strip() == "warning: Skipped: /Documents/pipe: a fifo (named pipe) is not copied."


def test_extract_refusals_are_one_sentence(
    partition: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["extract", "--partition", "1", "/Documents", "--to", str(tmp_path / "o")])
    assert code == 2
    assert "--repo DIR --image NAME, or a disk file with --file" in capsys.readouterr().err
    args = ["extract", "--file", "/dev/null", "--partition", "1", "/nothing"]
    code = main([*args, "--to", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert (code, len(err)) == (4, 1) and "/nothing is not in the partition" in err[0]
    # the destination on the image's own filesystem: the repository folder's
    args = ["extract", "--repo", str(tmp_path), "--image", "pc", "--partition", "1", "/Documents"]
    assert main([*args, "--to", str(tmp_path / "o")]) == 5
    assert "on the filesystem that holds the image" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_image_of_the_list_is_a_repository_image_or_a_disk_file(tmp_path: Path) -> None:
    (tmp_path / "images/pc").mkdir(parents=True)
    (tmp_path / "old-pc.qcow2").write_bytes(b"QFI\xfb")
    assert extract_job.where_of(str(tmp_path), "pc") == ImageWhere(str(tmp_path), "pc")
    disk_file = extract_job.where_of(str(tmp_path), "old-pc.qcow2")
    assert disk_file == ImageWhere(file=str(tmp_path / "old-pc.qcow2"))
    assert disk_file.sources() == [tmp_path / "old-pc.qcow2"]
    assert ImageWhere("ssh://backup@nas/images", "pc").sources() == []

"""jobs.filedest: the checks before a disk file is written, and NAME.part renamed at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import DeviceError, SafetyRefusal, UsageError
from appliance.jobs import filedest
from appliance.jobs.filedest import destination, written_as


@pytest.fixture(autouse=True)
def on_a_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """tmp_path may be on tmpfs here; the RAM rule has its own test."""
    monkeypatch.setattr(filedest, "filesystem_type", lambda path: "ext4")


def test_an_existing_file_is_refused_without_force(tmp_path: Path) -> None:
    (tmp_path / "disk.img").write_bytes(b"old")
    with pytest.raises(SafetyRefusal, match="exists; add --force"):
        destination(tmp_path / "disk.img", 1000)
    assert destination(tmp_path / "disk.img", 1000, force=True).kind == "img"


def test_a_folder_or_missing_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.img").mkdir()
    with pytest.raises(SafetyRefusal, match="not a plain file"):
        destination(tmp_path / "dir.img", 1000, force=True)
    with pytest.raises(UsageError, match="does not exist"):
        destination(tmp_path / "nowhere" / "disk.img", 1000)


def test_too_little_room_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filedest, "free_space", lambda path: 100 * 1024 * 1024)
    with pytest.raises(SafetyRefusal, match="free some space"):
        destination(tmp_path / "disk.img", 200 * 1024 * 1024)
    # the same data as a zstd stream is expected to take less
    assert destination(tmp_path / "disk.img.zst", 120 * 1024 * 1024, ratio=0.5).kind == "zst"


def test_a_folder_in_memory_needs_allow_ram(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filedest, "filesystem_type", lambda path: "tmpfs")
    with pytest.raises(SafetyRefusal, match="--allow-ram"):
        destination(tmp_path / "disk.img", 1000)
    destination(tmp_path / "disk.img", 1000, allow_ram=True)


def test_the_file_appears_only_when_complete(tmp_path: Path) -> None:
    dest = destination(tmp_path / "disk.img", 1000)
    with written_as(dest) as part:
        part.write_bytes(b"data")
        assert not dest.path.exists()
    assert dest.path.read_bytes() == b"data" and not part.exists()


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    dest = destination(tmp_path / "disk.img", 1000)
    with (
        pytest.raises(DeviceError, match="could not be written: No space left"),
        written_as(dest) as part,
    ):
        part.write_bytes(b"half")
        raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyboardInterrupt), written_as(dest) as part:
        part.write_bytes(b"half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []

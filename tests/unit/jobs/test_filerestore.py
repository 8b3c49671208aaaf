"""Which Windows system image and which of its disks a restore names: the name `images`
lists, the computer's name when it has one backup, "NAME disk N" or --disk N; a sentence
when it is ambiguous or names no disk. Folder layouts without disk files (nothing opened),
and backups described as the listing describes them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from appliance.cli.restorefile import check_args
from appliance.errors import UsageError
from appliance.jobs.filerestore import find_windows_backup, pick_disk
from appliance.shelf.winbackup import BackupDisk, WindowsBackup, backup_name

MiB = 1024 * 1024


def backup_folder(root: Path, computer: str, stamp: str) -> Path:
    folder = root / "WindowsImageBackup" / computer / f"Backup {stamp}"
    folder.mkdir(parents=True)
    (folder / "BackupSpecs.xml").write_bytes("<x/>".encode("utf-16"))
    return folder


def backup_of(*files: str) -> WindowsBackup:
    disks = tuple(
        BackupDisk(Path(f"/shelf/{name}"), "VHDX", 64 * MiB, MiB, "gpt") for name in files
    )
    return WindowsBackup(
        Path("/shelf/Backup 2026-11-30 101500"), "PC1", "2026-11-30T10:15:00", disks
    )


def test_a_backup_is_found_by_its_listed_name_or_by_its_computer(tmp_path: Path) -> None:
    folder = backup_folder(tmp_path, "PC-LAB-07", "2026-11-30 101500")
    assert backup_name(folder) == "PC-LAB-07 2026-11-30 10:15:00"
    for name in ("PC-LAB-07 2026-11-30 10:15:00", "PC-LAB-07"):
        found = find_windows_backup(str(tmp_path), name)
        assert found is not None and found[0].folder == folder and found[1] is None, name
    found = find_windows_backup(str(tmp_path), "PC-LAB-07 2026-11-30 10:15:00 disk 2")
    assert found is not None and found[1] == "2"
    assert find_windows_backup(str(tmp_path), "PC-OTHER") is None
    assert find_windows_backup(str(tmp_path / "nowhere"), "PC-LAB-07") is None


def test_a_computer_with_two_backups_must_be_named_with_the_date(tmp_path: Path) -> None:
    backup_folder(tmp_path, "PC1", "2026-11-30 101500")
    backup_folder(tmp_path, "PC1", "2026-12-01 080000")
    with pytest.raises(UsageError, match="has 2 Windows system images") as caught:
        find_windows_backup(str(tmp_path), "PC1")
    assert '"PC1 2026-12-01 08:00:00"' in str(caught.value)
    found = find_windows_backup(str(tmp_path), "PC1 2026-12-01 08:00:00")
    assert found is not None and found[0].date == "2026-12-01T08:00:00"


def test_the_disk_is_picked_by_number_or_file_name() -> None:
    one = backup_of("a.vhdx")
    assert pick_disk(one, None)[0] == 1
    two = backup_of("a.vhdx", "b.vhdx")
    with pytest.raises(UsageError, match=r"holds 2 disks .*--disk 1 to 2"):
        pick_disk(two, None)
    assert pick_disk(two, "2")[1].file.name == "b.vhdx"
    assert pick_disk(two, "b.vhdx")[0] == 2
    with pytest.raises(UsageError, match="has no disk 3"):
        pick_disk(two, "3")


def namespace(**given: object) -> argparse.Namespace:
    args = {"file": None, "repo": None, "image": None, "disk": None, **given}
    return argparse.Namespace(**args)


@pytest.mark.parametrize(
    "given, words",
    [
        ({"file": "a.qcow2", "repo": "/r", "image": "x"}, "not both"),
        ({"file": "a.qcow2", "disk": "2"}, "--disk names a disk"),
        ({"repo": "/r"}, "--file FILE"),
        ({}, "--repo DIR --image NAME"),
    ],
)
def test_restore_names_an_image_or_a_file(given: dict[str, object], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        check_args(namespace(**given))


def test_a_file_or_an_image_alone_is_fine() -> None:
    check_args(namespace(file="a.qcow2"))
    check_args(namespace(repo="/r", image="x", disk="1"))

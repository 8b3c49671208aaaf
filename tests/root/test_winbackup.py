"""A Windows system image folder (tests/kit/winbackup.py: a VHDX made by qemu-img from an
ESP + MSR + NTFS loop disk, in Windows' folder layout) is found and described: computer,
date, the disk's size, table and partitions with their filesystems, read through the VHDX."""

from __future__ import annotations

from pathlib import Path

import pytest
from kit.cli import appliance, result_json
from kit.diskcompare import device_size, run
from kit.loops import Loops
from kit.winbackup import build_windows_disk, make_backup_folder

from appliance.shelf.winbackup import backup_folders, find_backups

pytestmark = pytest.mark.root


def test_a_system_image_folder_is_found_and_described(tmp_path: Path, loops: Loops) -> None:
    node = build_windows_disk(loops, tmp_path / "windows.img")
    vhdx = tmp_path / "disk.vhdx"
    run("qemu-img", "convert", "-f", "raw", "-O", "vhdx", node, str(vhdx))
    backup = make_backup_folder(tmp_path / "shelf", "PC-LAB-07", "2026-11-30 101500", [vhdx])
    shelf = tmp_path / "shelf"
    # found from the shelf, from WindowsImageBackup, from the computer and from the backup
    for start in (shelf, shelf / "WindowsImageBackup", backup.parent, backup):
        assert backup_folders(start) == [backup], start
    [found] = find_backups(shelf)
    assert found.problem is None
    assert (found.computer, found.date) == ("PC-LAB-07", "2026-11-30T10:15:00")
    [disk] = found.disks
    assert disk.format == "VHDX" and disk.size == device_size(node) and disk.table == "gpt"
    got = [(p.number, p.type, p.fstype, p.label) for p in disk.partitions]
    assert got == [
        (1, "EFI System", "vfat", "SYSTEM"),
        (2, "Microsoft reserved", None, None),
        (3, "Microsoft basic data", "ntfs", "Windows"),
    ]
    assert found.to_json()["restorable"] is True
    # `images` lists it on a plain folder (not one of our repositories), with its disks
    out = result_json(appliance("images", "--repo", str(shelf), "--json"))
    assert out["images"] == [] and out["shelf"] == []
    [listed] = out["windows_backups"]
    assert listed["computer"] == "PC-LAB-07" and listed["disks"][0]["table"] == "gpt"
    text = appliance("images", "--repo", str(shelf)).stdout
    assert "PC-LAB-07 2026-11-30 10:15:00" in text and "3 ntfs" in text, text


def test_a_backup_without_disk_files_or_with_a_damaged_one_says_so(tmp_path: Path) -> None:
    empty = make_backup_folder(tmp_path, "PC1", "2026-01-02 030405", [])
    [found] = find_backups(tmp_path)
    assert found.problem == f"{empty} holds no disk file (.vhdx or .vhd)."
    (empty / "broken.vhdx").write_bytes(b"\1" * 4096)
    [found] = find_backups(tmp_path)
    assert found.problem is not None and "cannot be read as a VHDX disk" in found.problem


def test_other_folders_are_not_backups(tmp_path: Path) -> None:
    (tmp_path / "WindowsImageBackup" / "PC" / "Backup of my stuff").mkdir(parents=True)
    (tmp_path / "Backup 2026-11-30 101500").mkdir()
    assert backup_folders(tmp_path) == []
    assert backup_folders(tmp_path / "Backup 2026-11-30 101500") == []

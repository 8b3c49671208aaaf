"""How each filesystem is mounted to read its files: read-only, no journal replayed, FUSE
readers for FAT and exFAT where the kernel has no driver, and one sentence for what cannot be
mounted at all."""

from __future__ import annotations

import pytest

from appliance.fs import readonly
from appliance.fs.readonly import mount_argv, mount_said, why_not_mountable


@pytest.mark.parametrize(
    ("fstype", "argv"),
    [
        ("ext4", ["mount", "-t", "ext4", "-o", "ro,noload,nodev,nosuid,noexec"]),
        ("ext2", ["mount", "-t", "ext4", "-o", "ro,noload,nodev,nosuid,noexec"]),
        ("xfs", ["mount", "-t", "xfs", "-o", "ro,norecovery,nouuid,nodev,nosuid,noexec"]),
        ("btrfs", ["mount", "-t", "btrfs", "-o", "ro,rescue=nologreplay,nodev,nosuid,noexec"]),
        ("ntfs", ["ntfs-3g", "-o", "ro,nodev,nosuid,noexec"]),
    ],
)
def test_each_filesystem_is_mounted_read_only_without_replaying_its_journal(
    fstype: str, argv: list[str]
) -> None:
    assert mount_argv("/dev/loop9", fstype, "/mnt/x") == [*argv, "/dev/loop9", "/mnt/x"]


@pytest.mark.parametrize(
    ("fstype", "kernel", "first"),
    [
        ("vfat", False, ["fusefat", "-o", "ro"]),
        ("exfat", False, ["mount.exfat-fuse", "-o", "ro"]),
        ("vfat", True, ["mount", "-t", "vfat", "-o", "ro,nodev,nosuid,noexec"]),
        ("exfat", True, ["mount", "-t", "exfat", "-o", "ro,nodev,nosuid,noexec"]),
    ],
)
def test_fat_and_exfat_use_the_kernel_when_it_has_them_else_a_fuse_reader(
    monkeypatch: pytest.MonkeyPatch, fstype: str, kernel: bool, first: list[str]
) -> None:
    monkeypatch.setattr(readonly, "kernel_has", lambda name: kernel)
    assert mount_argv("/dev/loop9", fstype, "/mnt/x") == [*first, "/dev/loop9", "/mnt/x"]


@pytest.mark.parametrize(
    ("fstype", "method", "words"),
    [
        ("swap", "swap", "swap space"),
        (None, "swap", "swap space"),
        ("crypto_LUKS", "raw", "LUKS-encrypted"),
        ("BitLocker", "raw", "BitLocker-encrypted"),
        ("LVM2_member", "raw", "LVM physical volume"),
        ("linux_raid_member", "raw", "RAID set"),
        (None, "raw", "no filesystem"),
        ("zfs_member", "raw", "zfs_member filesystem cannot be mounted"),
    ],
)
def test_what_cannot_be_mounted_gets_one_sentence(
    fstype: str | None, method: str, words: str
) -> None:
    reason = why_not_mountable(fstype, method)
    assert reason is not None and words in reason and reason.endswith(".")


@pytest.mark.parametrize(
    "fstype", ["ext2", "ext3", "ext4", "xfs", "btrfs", "ntfs", "vfat", "exfat"]
)
def test_the_filesystems_with_files_are_mountable(fstype: str) -> None:
    assert why_not_mountable(fstype, "partclone") is None
    assert why_not_mountable(fstype, "raw") is None


def test_what_mount_said_is_its_reason_not_its_hint_to_read_dmesg() -> None:
    said = (
        "mount: /run/appliance/m-x/root: can't read superblock on /dev/loop1.\n"
        "       dmesg(1) may have more information after failed mount system call.\n"
    )
    assert mount_said(said) == "can't read superblock on /dev/loop1"
    assert mount_said("") == ""

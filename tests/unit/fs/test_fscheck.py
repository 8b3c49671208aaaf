"""The checker table and the reading of each checker's output (captured runs)."""

from __future__ import annotations

import subprocess

import pytest

from appliance.errors import ToolMissing
from appliance.fs import check as fscheck

E2FSCK_CLEAN = """e2fsck 1.47.0 (5-Feb-2023)
Pass 1: Checking inodes, blocks, and sizes
Pass 2: Checking directory structure
Pass 3: Checking directory connectivity
Pass 4: Checking reference counts
Pass 5: Checking group summary information
root: 24/51200 files (0.0% non-contiguous), 12817/204800 blocks
"""

E2FSCK_BROKEN = """e2fsck 1.47.0 (5-Feb-2023)
Superblock has an invalid journal (inode 8).
Clear? no

e2fsck: Illegal inode number while checking ext3 journal for root

root: ********** WARNING: Filesystem still has errors **********

"""

E2FSCK_JOURNAL = """e2fsck 1.47.0 (5-Feb-2023)
Warning: skipping journal recovery because doing a read-only filesystem check.
Pass 1: Checking inodes, blocks, and sizes
root: 24/51200 files (0.0% non-contiguous), 12817/204800 blocks
"""

NTFSFIX_CLEAN = """Mounting volume... OK
Processing of $MFT and $MFTMirr completed successfully.
Checking the alternate boot sector... OK
NTFS volume version is 3.1.
NTFS partition /dev/loop3p3 was processed successfully.
"""

NTFSFIX_BAD_MIRROR = """Mounting volume... FAILED
Attempting to correct errors...
Processing $MFT and $MFTMirr...
Comparing $MFTMirr to $MFT... FAILED
Correcting differences in $MFTMirr record 0...No change made
"""

FAT_BACKUP_DIFFERS = """fsck.fat 4.2 (2021-01-31)
There are differences between boot sector and its backup.
This is mostly harmless. Differences: (offset:original/backup)
  13:08/04
  Not automatically fixing this.
/dev/loop3p1: 12 files, 120/65501 clusters
"""

FAT_DIRTY = """fsck.fat 4.2 (2021-01-31)
There are differences between boot sector and its backup.
This is mostly harmless. Differences: (offset:original/backup)
  65:01/00
  Not automatically fixing this.
Dirty bit is set. Fs was not properly unmounted and some data may be corrupt.
 Automatically removing dirty bit.
/dev/loop3p1: 12 files, 120/65501 clusters
"""

XFS_CLEAN = """Phase 1 - find and verify superblock...
Phase 2 - using internal log
        - zero log...
Phase 7 - verify link counts...
No modify flag set, skipping filesystem flush and exiting.
"""

XFS_BROKEN = """Phase 1 - find and verify superblock...
Phase 2 - using internal log
        - scan filesystem freespace and inode maps...
bad magic # 0x0 in btbno block 0/1
bad magic # 0x0 in btcnt block 0/2
agf_freeblks 1000, counted 0 in ag 0
Phase 7 - verify link counts...
No modify flag set, skipping filesystem flush and exiting.
"""


def checker(fstype: str) -> fscheck.Checker:
    found = fscheck.checker_for(fstype)
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("fstype", "name"),
    [
        ("ext2", "e2fsck -fn"),
        ("ext3", "e2fsck -fn"),
        ("ext4", "e2fsck -fn"),
        ("btrfs", "btrfs check --readonly"),
        ("xfs", "xfs_repair -n"),
        ("ntfs", "ntfsfix -n"),
        ("vfat", "fsck.fat -n"),
        ("exfat", "fsck.exfat -n"),
    ],
)
def test_every_mapped_filesystem_has_a_read_only_checker(fstype: str, name: str) -> None:
    found = checker(fstype)
    assert found.name == name
    # each runs with its "change nothing" flag
    assert {"-n", "-fn", "--readonly"} & set(found.argv)


def test_every_filesystem_partclone_maps_is_in_the_table() -> None:
    from appliance.fs.usedmap import PARTCLONE_PROGRAM

    assert all(fscheck.checker_for(fstype) for fstype in PARTCLONE_PROGRAM)
    assert fscheck.checker_for("swap") is None and fscheck.checker_for(None) is None


def test_a_clean_run_passes() -> None:
    assert fscheck.judge(checker("ext4"), 0, E2FSCK_CLEAN) == (True, None)
    assert fscheck.judge(checker("ntfs"), 0, NTFSFIX_CLEAN) == (True, None)
    assert fscheck.judge(checker("xfs"), 0, XFS_CLEAN) == (True, None)


def test_findings_are_the_detail_without_progress_lines() -> None:
    passed, detail = fscheck.judge(checker("ext4"), 12, E2FSCK_BROKEN)
    assert not passed
    assert detail == (
        "exit code 12: Superblock has an invalid journal (inode 8).; "
        "e2fsck: Illegal inode number while checking ext3 journal for root"
    )
    passed, detail = fscheck.judge(checker("xfs"), 1, XFS_BROKEN)
    assert not passed and detail is not None
    assert detail.startswith("exit code 1: bad magic # 0x0 in btbno block 0/1;")
    assert "Phase" not in detail


def test_problems_reported_on_exit_0_fail() -> None:
    passed, detail = fscheck.judge(checker("ext4"), 0, E2FSCK_JOURNAL)
    assert not passed and detail and "skipping journal recovery" in detail
    passed, detail = fscheck.judge(checker("vfat"), 0, FAT_BACKUP_DIFFERS)
    assert not passed and detail and "differences between boot sector" in detail
    # ntfsfix must say the volume was processed successfully
    assert not fscheck.judge(checker("ntfs"), 0, NTFSFIX_BAD_MIRROR)[0]


def test_a_fat_dirty_bit_alone_passes() -> None:
    """Windows leaves the dirty bit set on a hibernated PC's ESP: no structural error."""
    assert fscheck.judge(checker("vfat"), 1, FAT_DIRTY)[0]  # fsck.fat -n exits 1 for it


def test_a_long_detail_is_cut() -> None:
    passed, detail = fscheck.judge(checker("btrfs"), 1, "x" * 1000)
    assert not passed and detail is not None
    assert len(detail) == fscheck.DETAIL_CHARS and detail.endswith("...")


def test_no_output_says_the_exit_code() -> None:
    assert fscheck.judge(checker("exfat"), 4, "") == (False, "exit code 4")


def test_a_missing_checker_is_skipped_with_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(args: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        raise ToolMissing(
            "The program fsck.exfat is missing; install the Debian package exfatprogs."
        )

    monkeypatch.setattr(fscheck, "run", missing)
    result = fscheck.check("/nonexistent", "exfat", is_file=True)
    assert result.result == "skipped" and result.detail and "exfatprogs" in result.detail


def test_an_unknown_filesystem_is_skipped() -> None:
    result = fscheck.check("/nonexistent", "zfs_member", is_file=False)
    assert (result.tool, result.result) == ("-", "skipped")
    assert result.to_json() == {
        "tool": "-",
        "result": "skipped",
        "seconds": 0.0,
        "detail": "no checker is known for zfs_member",
    }


def test_a_file_gets_the_file_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake(args: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        seen.append(list(args))
        return subprocess.CompletedProcess(args, 0, XFS_CLEAN, "")

    monkeypatch.setattr(fscheck, "run", fake)
    assert fscheck.check("/tmp/view/disk", "xfs", is_file=True).passed
    assert fscheck.check("/dev/sda5", "xfs", is_file=False).passed
    assert seen == [["xfs_repair", "-n", "-f", "/tmp/view/disk"], ["xfs_repair", "-n", "/dev/sda5"]]

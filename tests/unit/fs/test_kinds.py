"""fs/kinds: the one table of filesystem kinds answers what the scattered constants did."""

from __future__ import annotations

import pytest

from appliance.errors import ToolFailed
from appliance.fs import compare, kinds, resize, usedmap
from appliance.fs.check import checker_for
from appliance.fs.kinds import KINDS, kind_of
from appliance.plan import fit
from appliance.repo import mount

# What the engine answered before the table existed, written out by hand for every kind.
OLD_PARTCLONE = {
    "ext2": "partclone.extfs",
    "ext3": "partclone.extfs",
    "ext4": "partclone.extfs",
    "xfs": "partclone.xfs",
    "btrfs": "partclone.btrfs",
    "ntfs": "partclone.ntfs",
    "vfat": "partclone.fat",
    "exfat": "partclone.exfat",
}
OLD_GROWABLE = {"ext2", "ext3", "ext4", "xfs", "btrfs", "ntfs"}
OLD_SHRINKABLE = {"ext2", "ext3", "ext4", "ntfs"}
OLD_MOUNTABLE = {"ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "exfat", "ntfs"}
OLD_READ_ONLY = {
    "ext2": "ro,noload",
    "ext3": "ro,noload",
    "ext4": "ro,noload",
    "xfs": "ro,norecovery,nouuid",
    "btrfs": "ro,rescue=nologreplay",
}
OLD_ENCRYPTED = {"crypto_LUKS": "LUKS", "BitLocker": "BitLocker"}
EVERY = sorted(set(KINDS) | {"swap", "iso9660", "zfs_member", ""})


@pytest.mark.parametrize("fstype", EVERY)
def test_the_table_answers_what_the_old_constants_did(fstype: str) -> None:
    kind = kind_of(fstype)
    assert usedmap.PARTCLONE_PROGRAM.get(fstype) == OLD_PARTCLONE.get(fstype)
    assert (fstype in fit.GROWABLE_FS) == (fstype in OLD_GROWABLE)
    assert (fstype in fit.SHRINKABLE_FS) == (fstype in OLD_SHRINKABLE)
    assert (fstype in mount.MOUNTABLE) == (fstype in OLD_MOUNTABLE)
    assert compare.can_compare(fstype) == (fstype in OLD_READ_ONLY or fstype == "ntfs")
    assert (kind.encrypted if kind else None) == OLD_ENCRYPTED.get(fstype)
    if fstype in OLD_READ_ONLY:
        assert kind is not None and kind.read_only == OLD_READ_ONLY[fstype] and not kind.fuse


def test_only_ntfs_goes_through_fuse_and_ext2_ext3_mount_with_ext4s_driver() -> None:
    assert {name for name, kind in KINDS.items() if kind.fuse} == {"ntfs"}
    assert {name: kind.driver for name, kind in KINDS.items() if kind.driver} == {
        "ext2": "ext4",
        "ext3": "ext4",
    }


def test_xfs_and_btrfs_grow_only_mounted() -> None:
    assert {name for name, kind in KINDS.items() if kind.grow_mounted} == {"xfs", "btrfs"}
    assert all(KINDS[name].grow for name in ("xfs", "btrfs"))


def test_what_cannot_be_mapped_is_copied_whole_and_every_mapped_kind_has_a_checker() -> None:
    assert frozenset(OLD_PARTCLONE) == kinds.MAPPABLE
    assert all(checker_for(name) for name in kinds.MAPPABLE)
    assert kind_of(None) is None and kind_of("") is None and kind_of("zfs_member") is None


def test_resize_refuses_what_the_table_says_cannot_shrink() -> None:
    # no tool runs: the table says no before any program is started
    assert resize.min_size("/nonexistent", "xfs") is None
    assert resize.min_size("/nonexistent", "vfat") is None
    assert resize.grow("/nonexistent", "vfat") is False
    assert resize.grow("/nonexistent", None) is False
    with pytest.raises(ToolFailed, match="cannot be shrunk"):
        resize.shrink("/nonexistent", "btrfs", 1 << 30)


@pytest.mark.parametrize(
    ("fstype", "family"),
    [("ext2", "ext"), ("ext3", "ext"), ("ext4", "ext"), ("ntfs", "ntfs"), ("vfat", "fat")],
)
def test_families_name_the_tools(fstype: str, family: str) -> None:
    assert kinds.family_of(fstype) == family


def test_an_unknown_type_has_no_family() -> None:
    assert kinds.family_of("zfs_member") is None and kinds.family_of(None) is None

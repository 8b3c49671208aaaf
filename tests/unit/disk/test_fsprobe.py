"""fsprobe: blkid export parsing on captured output, and blkid -p on filesystem image files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from appliance.disk.fsprobe import FsInfo, fsinfo_from_export, parse_export, probe_filesystem
from appliance.errors import DeviceError

MiB = 1024 * 1024

# `blkid -p -o export` of a FAT12 image made with `mkfs.vfat -n 'MY DISK$'`
VFAT = """DEVNAME=v.img
SEC_TYPE=msdos
LABEL_FATBOOT=MY\\ DISK\\$
LABEL=MY\\ DISK\\$
UUID=CB05-563B
VERSION=FAT12
BLOCK_SIZE=512
TYPE=vfat
USAGE=filesystem
"""

# an XFS partition labelled "x lab": XFS has no VERSION
XFS = """DEVNAME=/dev/loop0p2
LABEL=x\\ lab
UUID=6e4c6ddb-0070-4cf2-93f0-f09db7cf497e
BLOCK_SIZE=512
TYPE=xfs
USAGE=filesystem
PART_ENTRY_SCHEME=gpt
PART_ENTRY_UUID=5920efac-39e2-4543-91dd-735ca068f972
PART_ENTRY_TYPE=0fc63daf-8483-4772-8e79-3d69d8477de4
PART_ENTRY_NUMBER=2
PART_ENTRY_OFFSET=34816
PART_ENTRY_SIZE=94208
PART_ENTRY_DISK=7:0
"""

# an unformatted MBR partition: blkid exits 0 but only describes the partition entry
BLANK_PARTITION = """DEVNAME=/dev/loop2p1
PART_ENTRY_SCHEME=dos
PART_ENTRY_UUID=6c5a3f14-01
PART_ENTRY_TYPE=0x83
PART_ENTRY_NUMBER=1
PART_ENTRY_OFFSET=2048
PART_ENTRY_SIZE=8192
PART_ENTRY_DISK=7:2
"""

# an extended partition: a nested partition table, not a filesystem
EXTENDED = """DEVNAME=/dev/loop2p2
PTTYPE=dos
PART_ENTRY_SCHEME=dos
PART_ENTRY_TYPE=0x5
PART_ENTRY_NUMBER=2
"""


def test_vfat_with_escaped_label() -> None:
    values = parse_export(VFAT)
    assert values["LABEL"] == "MY DISK$"
    assert fsinfo_from_export(values) == FsInfo(
        "vfat", "FAT12", "MY DISK$", "CB05-563B", "filesystem"
    )


def test_xfs_without_version() -> None:
    info = fsinfo_from_export(parse_export(XFS))
    assert (info.type, info.version, info.label) == ("xfs", None, "x lab")
    assert info.uuid == "6e4c6ddb-0070-4cf2-93f0-f09db7cf497e"


@pytest.mark.parametrize("text", [BLANK_PARTITION, EXTENDED, ""])
def test_no_filesystem(text: str) -> None:
    assert fsinfo_from_export(parse_export(text)) == FsInfo()


def test_only_the_first_device_block() -> None:
    values = parse_export("\nTYPE=ext4\nUUID=a\n\nTYPE=xfs\nUUID=b\n")
    assert values == {"TYPE": "ext4", "UUID": "a"}


def test_value_with_equals_and_trailing_backslash() -> None:
    assert parse_export("LABEL=a=b\\\\c\nUUID=x\\") == {"LABEL": "a=b\\c", "UUID": "x\\"}


# ---- blkid -p on image files ------------------------------------------------------------


def _file(path: Path, size: int) -> str:
    with open(path, "wb") as handle:
        handle.truncate(size)
    return str(path)


def _mk(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True)


def test_ext4_image(tmp_path: Path) -> None:
    path = _file(tmp_path / "ext4.img", 16 * MiB)
    uuid = "0d6c4b8e-5b0e-4c55-9a5e-2c3a8f0e9f11"
    _mk("mkfs.ext4", "-q", "-F", "-L", "root fs", "-U", uuid, path)
    assert probe_filesystem(path) == FsInfo("ext4", "1.0", "root fs", uuid, "filesystem")


def test_swap_image(tmp_path: Path) -> None:
    path = _file(tmp_path / "swap.img", 8 * MiB)
    uuid = "4a1248fe-fcb1-400c-af97-0205b28f25ed"
    _mk("mkswap", "-L", "sw", "-U", uuid, path)
    assert probe_filesystem(path) == FsInfo("swap", "1", "sw", uuid, "other")


def test_vfat_image(tmp_path: Path) -> None:
    path = _file(tmp_path / "fat.img", 40 * MiB)
    _mk("mkfs.vfat", "-F", "32", "-n", "EFI", "-i", "1234ABCD", path)
    info = probe_filesystem(path)
    assert (info.type, info.version, info.label, info.uuid) == ("vfat", "FAT32", "EFI", "1234-ABCD")


def test_unformatted_file(tmp_path: Path) -> None:
    assert probe_filesystem(_file(tmp_path / "blank.img", 4 * MiB)) == FsInfo()


def test_missing_node(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="There is no device"):
        probe_filesystem(str(tmp_path / "absent"))

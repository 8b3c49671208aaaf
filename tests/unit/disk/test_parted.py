"""parted_table: sfdisk JSON parsing, the libparted/sfdisk merge, and pyparted on image files.

Image files are built with sfdisk scripts whose starts, sizes, types, GUIDs and names are
written here, so the expectations do not come from the code under test.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from appliance.disk.parted import (
    PartedEntry,
    PartedTable,
    SfdiskEntry,
    SfdiskTable,
    merge,
    parse_sfdisk_json,
    read_table,
)
from appliance.errors import DeviceError

MiB = 1024 * 1024

# `sfdisk --json /dev/loop1` on a loop device attached with `losetup -b 4096`
SFDISK_4K = """{
   "partitiontable": {
      "label": "gpt",
      "id": "B8486CEA-9F09-DD4C-A5C0-BDEB8615695F",
      "device": "/dev/loop1",
      "unit": "sectors",
      "firstlba": 256,
      "lastlba": 16378,
      "sectorsize": 4096,
      "partitions": [
         {
            "node": "/dev/loop1p1",
            "start": 256,
            "size": 4096,
            "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "uuid": "3DD63E70-03E0-AB4F-82A9-FFAED9713592"
         },{
            "node": "/dev/loop1p2",
            "start": 4352,
            "size": 11776,
            "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            "uuid": "D551BBE3-3937-A247-9077-6ADE3E6BCE51",
            "name": "data"
         }
      ]
   }
}"""

# `sfdisk --json mbr.img`: MBR with an extended partition; sfdisk prints type bytes unpadded
SFDISK_DOS = """{
   "partitiontable": {
      "label": "dos", "id": "0x6c5a3f14", "device": "mbr.img", "unit": "sectors",
      "sectorsize": 512,
      "partitions": [
         {"node": "mbr.img1", "start": 2048, "size": 8192, "type": "83", "bootable": true},
         {"node": "mbr.img2", "start": 10240, "size": 55296, "type": "5"},
         {"node": "mbr.img5", "start": 12288, "size": 8192, "type": "82"},
         {"node": "mbr.img6", "start": 22528, "size": 43008, "type": "7"}
      ]
   }
}"""

# `sfdisk --json gpt0.img`: a GPT with no partitions has no "partitions" key at all
SFDISK_EMPTY_GPT = """{
   "partitiontable": {
      "label": "gpt", "id": "CF93866C-A184-DF4F-B38B-E84763C48929", "device": "gpt0.img",
      "unit": "sectors", "firstlba": 2048, "lastlba": 32734, "sectorsize": 512
   }
}"""


def test_parse_4k_gpt() -> None:
    table = parse_sfdisk_json(SFDISK_4K, "/dev/loop1")
    assert table.label == "gpt"
    assert table.id == "b8486cea-9f09-dd4c-a5c0-bdeb8615695f"
    assert table.sector_size == 4096
    assert (table.first_lba, table.last_lba) == (256, 16378)
    first, second = table.entries
    assert (first.number, first.start, first.size) == (1, 256, 4096)
    assert first.type == "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
    assert first.uuid == "3dd63e70-03e0-ab4f-82a9-ffaed9713592"
    assert first.name is None
    assert (second.number, second.name) == (2, "data")


def test_parse_dos_pads_type_bytes() -> None:
    table = parse_sfdisk_json(SFDISK_DOS, "mbr.img")
    assert table.id == "0x6c5a3f14"
    assert [e.number for e in table.entries] == [1, 2, 5, 6]
    assert [e.type for e in table.entries] == ["83", "05", "82", "07"]
    assert all(e.uuid is None for e in table.entries)
    assert table.first_lba is None


def test_parse_gpt_without_partitions() -> None:
    table = parse_sfdisk_json(SFDISK_EMPTY_GPT, "gpt0.img")
    assert table.entries == ()
    assert table.last_lba == 32734


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        '{"x": 1}',
        '{"partitiontable": {"label": "gpt", '
        '"partitions": [{"node": "a1", "start": 1, "size": 2, '
        '"type": "not-a-guid"}]}}',
    ],
)
def test_parse_garbage_is_a_device_error(text: str) -> None:
    with pytest.raises(DeviceError, match="cannot be read"):
        parse_sfdisk_json(text, "/dev/sdx")


def test_merge_4k_converts_sectors_to_bytes() -> None:
    lib = PartedTable(
        "gpt",
        4096,
        (
            PartedEntry(1, 256, 4096, "primary", ("boot", "esp"), None),
            PartedEntry(2, 4352, 11776, "primary", (), "data"),
        ),
    )
    info = merge("/dev/loop1", lib, parse_sfdisk_json(SFDISK_4K, "/dev/loop1"))
    assert info is not None
    assert info.sector_size == 4096
    assert [(p.start, p.size) for p in info.partitions] == [
        (1 * MiB, 16 * MiB),
        (4352 * 4096, 11776 * 4096),
    ]
    assert info.partitions[0].flags == ("boot", "esp")
    assert info.partitions[1].guid == "d551bbe3-3937-a247-9077-6ade3e6bce51"


def _sfd(label: str = "gpt", *entries: SfdiskEntry, sector: int | None = 512) -> SfdiskTable:
    return SfdiskTable(label, None, sector, None, None, entries)


ONE = PartedEntry(1, 2048, 8192, "primary", (), None)
ONE_SFD = SfdiskEntry(1, 2048, 8192, "0fc63daf-8483-4772-8e79-3d69d8477de4", None, None)


def test_merge_no_table_anywhere() -> None:
    assert merge("x", PartedTable(None, 512, ()), None) is None
    assert merge("x", PartedTable("loop", 512, ()), None) is None  # bare filesystem


@pytest.mark.parametrize(
    ("lib", "sfd", "words"),
    [
        (PartedTable(None, 512, ()), _sfd("gpt", ONE_SFD), "libparted reads no table"),
        (PartedTable("gpt", 512, (ONE,)), None, "sfdisk reads no table"),
        (PartedTable("msdos", 512, (ONE,)), _sfd("gpt", ONE_SFD), "sfdisk reads gpt"),
        (PartedTable("gpt", 512, (ONE,)), _sfd("gpt"), "sees 1 partitions, sfdisk 0"),
        (
            PartedTable("gpt", 512, (PartedEntry(1, 2048, 4096, "primary", (), None),)),
            _sfd("gpt", ONE_SFD),
            "partition 1 differs",
        ),
        (
            PartedTable("gpt", 512, (PartedEntry(2, 2048, 8192, "primary", (), None),)),
            _sfd("gpt", ONE_SFD),
            "partition 2 differs",
        ),
        (PartedTable("gpt", 512, (ONE,)), _sfd("gpt", ONE_SFD, sector=4096), "sector size"),
        (PartedTable("mac", 512, ()), None, "only works with GPT and MBR"),
    ],
)
def test_merge_refuses_disagreement(lib: PartedTable, sfd: SfdiskTable | None, words: str) -> None:
    with pytest.raises(DeviceError, match=words):
        merge("/dev/sdx", lib, sfd)


# ---- pyparted + sfdisk on image files (no root, no loop device) -------------------------

EFI = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
LINUX = "0fc63daf-8483-4772-8e79-3d69d8477de4"
SWAP = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"
DISK_GUID = "11111111-2222-4333-8444-555555555555"
GUIDS = [
    "aaaaaaaa-0000-4000-8000-000000000001",
    "aaaaaaaa-0000-4000-8000-000000000002",
    "aaaaaaaa-0000-4000-8000-000000000004",
]


def _image(path: Path, size: int, script: str | None) -> str:
    with open(path, "wb") as handle:
        handle.truncate(size)
    if script is not None:
        subprocess.run(
            ["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(path)],
            input=script,
            text=True,
            check=True,
            capture_output=True,
        )
    return str(path)


def test_gpt_image(tmp_path: Path) -> None:
    script = (
        f"label: gpt\nlabel-id: {DISK_GUID}\nfirst-lba: 2048\n"
        f'start=2048, size=16384, type={EFI}, uuid={GUIDS[0]}, name="EFI system"\n'
        f"start=18432, size=40960, type={LINUX}, uuid={GUIDS[1]}\n"
        f'4: start=59392, size=32768, type={SWAP}, uuid={GUIDS[2]}, name="swap space"\n'
    )
    info = read_table(_image(tmp_path / "gpt.img", 64 * MiB, script))
    assert info is not None
    assert (info.type, info.id, info.sector_size) == ("gpt", DISK_GUID, 512)
    assert info.first_lba == 2048
    assert info.last_lba == 64 * MiB // 512 - 34  # 32 sectors of entries + header at the end
    assert [p.number for p in info.partitions] == [1, 2, 4]
    assert [(p.start, p.size) for p in info.partitions] == [
        (2048 * 512, 16384 * 512),
        (18432 * 512, 40960 * 512),
        (59392 * 512, 32768 * 512),
    ]
    assert [p.type for p in info.partitions] == [EFI, LINUX, SWAP]
    assert [p.guid for p in info.partitions] == GUIDS
    assert [p.name for p in info.partitions] == ["EFI system", None, "swap space"]
    assert [p.kind for p in info.partitions] == ["primary"] * 3
    assert "esp" in info.partitions[0].flags
    assert "swap" in info.partitions[2].flags


def test_mbr_image_with_extended(tmp_path: Path) -> None:
    script = (
        "label: dos\nlabel-id: 0x0badcafe\n"
        "start=2048, size=8192, type=83, bootable\n"
        "start=10240, size=55296, type=5\n"
        "start=12288, size=8192, type=82\n"
        "start=22528, size=43008, type=7\n"
    )
    info = read_table(_image(tmp_path / "mbr.img", 32 * MiB, script))
    assert info is not None
    assert (info.type, info.id, info.first_lba) == ("dos", "0x0badcafe", None)
    got = [(p.number, p.start // 512, p.size // 512, p.kind, p.type) for p in info.partitions]
    assert got == [
        (1, 2048, 8192, "primary", "83"),
        (2, 10240, 55296, "extended", "05"),
        (5, 12288, 8192, "logical", "82"),
        (6, 22528, 43008, "logical", "07"),
    ]
    assert "boot" in info.partitions[0].flags
    assert all(p.guid is None and p.name is None for p in info.partitions)


def test_gpt_with_no_partitions(tmp_path: Path) -> None:
    info = read_table(
        _image(tmp_path / "empty-gpt.img", 16 * MiB, f"label: gpt\nlabel-id: {DISK_GUID}\n")
    )
    assert info is not None
    assert (info.type, info.id, info.partitions) == ("gpt", DISK_GUID, ())


def test_no_table(tmp_path: Path) -> None:
    assert read_table(_image(tmp_path / "blank.img", 8 * MiB, None)) is None


def test_bare_filesystem_is_no_table(tmp_path: Path) -> None:
    path = _image(tmp_path / "fs.img", 16 * MiB, None)
    subprocess.run(["mkfs.ext4", "-q", "-F", path], check=True, capture_output=True)
    assert read_table(path) is None  # libparted calls this a "loop" label


def test_damaged_primary_gpt(tmp_path: Path) -> None:
    path = _image(
        tmp_path / "bad.img", 16 * MiB, f"label: gpt\nstart=2048, size=8192, type={LINUX}\n"
    )
    with open(path, "r+b") as handle:  # wipe the primary GPT header (LBA 1)
        handle.seek(512)
        handle.write(b"\0" * 512)
    with pytest.raises(DeviceError, match="looks damaged"):
        read_table(path)


def test_gpt_backup_not_at_end_is_read(tmp_path: Path) -> None:
    path = _image(
        tmp_path / "grown.img", 16 * MiB, f"label: gpt\nstart=2048, size=8192, type={LINUX}\n"
    )
    with open(path, "r+b") as handle:
        handle.truncate(32 * MiB)  # as after a dd onto a larger disk
    info = read_table(path)
    assert info is not None
    assert [(p.start, p.size) for p in info.partitions] == [(2048 * 512, 8192 * 512)]


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="empty"):
        read_table(_image(tmp_path / "zero.img", 0, None))
    with pytest.raises(DeviceError, match="There is no device"):
        read_table(str(tmp_path / "absent.img"))

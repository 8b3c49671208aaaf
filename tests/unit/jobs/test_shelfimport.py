"""The Clonezilla import adapter on the folders captured from Debian 12's real `ocs-sr`
(tests/unit/shelf/data/clonezilla, streams cut short: only the side files are read here):
the boot area as Clonezilla's restore makes it (real sfdisk on a scratch file), blkid.list,
the refusals, and the NTFS backup boot sector an imported region carries."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.errors import ImageError, UnsupportedImage
from appliance.io.source import SourceRegion
from appliance.io.windows import WINDOW
from appliance.jobs.shelfimport import (
    ImportSource,
    _boot_area,
    _sfdisk_named,
    disk_model,
    disk_size,
    read_blkid_list,
    saved_disk,
)
from appliance.shelf.clonezilla import load

DATA = Path(__file__).parent.parent / "shelf" / "data" / "clonezilla"
MiB = 1024 * 1024


def _bytes_at(held: list[tuple[int, bytes]], offset: int, length: int) -> bytes:
    for start, data in held:
        if start <= offset and offset + length <= start + len(data):
            return data[offset - start : offset - start + length]
    raise AssertionError(f"bytes {offset}+{length} are not in the boot area")


def test_mbr_boot_area_is_what_clonezilla_restore_writes() -> None:
    disk = saved_disk(load(DATA / "mbrimg"))
    table, held = _boot_area(disk, disk_size(disk))
    assert table.type == "dos" and table.id == "0x994decd2"
    assert [(p.number, p.kind) for p in table.partitions] == [
        (1, "primary"),
        (2, "extended"),
        (5, "logical"),
        (6, "logical"),
    ]
    mbr = (DATA / "mbrimg" / "loop0-mbr").read_bytes()
    assert _bytes_at(held, 0, 440) == mbr[:440]
    assert _bytes_at(held, 510, 2) == b"\x55\xaa"
    hidden = (DATA / "mbrimg" / "loop0-hidden-data-after-mbr").read_bytes()  # cut short
    assert any(hidden)
    assert _bytes_at(held, 512, len(hidden)) == hidden
    # the EBR before the first logical partition: the saved boot code, sfdisk's entries
    ebr_at = 206848 * 512
    ebr = _bytes_at(held, ebr_at, 512)
    assert ebr[:446] == (DATA / "mbrimg" / "loop0p2-ebr").read_bytes()[:446]
    assert ebr[510:] == b"\x55\xaa" and any(ebr[446:462])
    # the partitions' bytes are not part of the boot area
    assert all(start + len(data) <= 2048 * 512 or start >= ebr_at for start, data in held)


def test_gpt_boot_area_has_both_tables_and_the_boot_code() -> None:
    disk = saved_disk(load(DATA / "gptimg"))
    size = disk_size(disk)
    assert size == 500 * MiB
    table, held = _boot_area(disk, size)
    assert table.type == "gpt" and table.last_lba == 1023966
    assert _bytes_at(held, 512, 8) == b"EFI PART"
    assert _bytes_at(held, size - 512, 8) == b"EFI PART"  # the backup at the disk's end
    assert _bytes_at(held, 0, 440) == (DATA / "gptimg" / "loop0-mbr").read_bytes()[:440]
    named = _sfdisk_named(table.sfdisk, disk)
    assert isinstance(named, dict)
    assert named["device"] == "/dev/loop0"
    assert [p["node"] for p in named["partitions"]] == [f"/dev/loop0p{n}" for n in (1, 2, 3, 4)]
    assert named["partitions"][1]["attrs"] == "LegacyBIOSBootable"


def test_blkid_list_gives_labels_and_uuids() -> None:
    ids = read_blkid_list(DATA / "gptimg")
    assert ids["loop0p3"]["TYPE"] == "ntfs" and ids["loop0p3"]["LABEL"] == "DATA"
    assert ids["loop0p1"]["LABEL"] == "ESP"


def test_the_disk_model_comes_from_blkdev_list(tmp_path: Path) -> None:
    assert disk_model(DATA / "gptimg", "loop0") is None  # a loop device has none
    (tmp_path / "blkdev.list").write_text(
        "KNAME   NAME       SIZE TYPE FSTYPE MOUNTPOINT MODEL\n"
        "sda     sda      238.5G disk                   Samsung SSD 860 EVO 250GB\n"
        "sda1    `-sda1     512M part vfat              \n"
    )
    assert disk_model(tmp_path, "sda") == "Samsung SSD 860 EVO 250GB"
    assert disk_model(tmp_path, "sda1") is None


def test_what_cannot_be_imported_is_one_sentence(tmp_path: Path) -> None:
    lvm = tmp_path / "lvm"
    shutil.copytree(DATA / "mbrimg", lvm)
    (lvm / "lvm_vg_dev.list").write_text("/dev/sda5 vg0 abc\n")
    with pytest.raises(UnsupportedImage, match="lvm cannot be imported here: it holds LVM"):
        saved_disk(load(lvm))
    parts = tmp_path / "parts"
    shutil.copytree(DATA / "gptimg", parts)
    (parts / "disk").unlink()
    with pytest.raises(UnsupportedImage, match="saveparts"):
        saved_disk(load(parts))
    gone = tmp_path / "gone"
    shutil.copytree(DATA / "gptimg", gone)
    (gone / "loop0p2.ext4-ptcl-img.zst").unlink()
    with pytest.raises(ImageError, match="incomplete: no stream holds loop0p2"):
        saved_disk(load(gone))


class _Inner:
    """A ClonezillaSource stand-in (the seam): window bytes by number, reads counted."""

    def __init__(self, windows: dict[int, bytes]) -> None:
        self.windows = windows
        self.reads: list[int] = []

    def read_window(self, region: int, number: int) -> bytes | None:
        self.reads.append(number)
        return self.windows[number]

    def close(self) -> None:
        pass


def test_ntfs_backup_boot_sector_is_the_primary() -> None:
    window = WINDOW
    boot = b"\xeb\x52\x90NTFS    " + bytes(499) + b"\x55\xaa"
    first = boot + bytes(window - 512)
    last = bytes(window)
    inner = _Inner({0: first, 3: last})
    size = 4 * window
    backup = size - 512
    outside = SourceRegion("outside", None, 0, 8 * window, None, ((0, 512),), "boot area")
    held = [(0, b"\x01" * 512)]
    part = SourceRegion("p1", 1, window, size, "ntfs", ((0, 4096), (backup, 512)), "p1")
    source = ImportSource(outside, held, inner, [part], [0], {1: backup}, {1: first})  # type: ignore[arg-type]
    assert source.read_window(0, 0)[:513] == b"\x01" * 512 + b"\x00"  # type: ignore[index]
    assert source.read_window(1, 0) == first
    out = source.read_window(1, 3)
    assert out is not None and out[-512:] == boot and not any(out[:-512])
    assert inner.reads == [3]  # the first window was not read twice


def test_an_older_dump_gives_the_same_table(tmp_path: Path) -> None:
    """util-linux before 2.26: no label line, `Id=`, empty slots (sfdisk would refuse the
    empty slot lines as they are; the script is made from the model's reading)."""
    old = tmp_path / "old"
    shutil.copytree(DATA / "mbrimg", old)
    (old / "loop0-pt.sf").write_text(
        "# partition table of /dev/loop0\nunit: sectors\n\n"
        "/dev/loop0p1 : start=     2048, size=   204800, Id=83, bootable\n"
        "/dev/loop0p2 : start=   206848, size=   368640, Id= 5\n"
        "/dev/loop0p3 : start=        0, size=        0, Id= 0\n"
        "/dev/loop0p4 : start=        0, size=        0, Id= 0\n"
        "/dev/loop0p5 : start=   208896, size=   245760, Id=83\n"
        "/dev/loop0p6 : start=   456704, size=    81920, Id=da\n"
    )
    new_disk = saved_disk(load(DATA / "mbrimg"))
    old_disk = saved_disk(load(old))
    new_table, _ = _boot_area(new_disk, disk_size(new_disk))
    old_table, _ = _boot_area(old_disk, disk_size(old_disk))
    assert old_table.type == "dos"
    assert old_table.partitions == new_table.partitions

"""Which files of a Clonezilla folder hold which partition, on folders laid out with the file
names Debian's ocs-sr 5.3 wrote (tests/root/test_clonezilla_verify.py makes real ones), and
the verdict that sums an image up."""

from __future__ import annotations

from pathlib import Path

from appliance.errors import CorruptData, ImageError, UnsupportedImage
from appliance.jobs.shelfverify import (
    PartVerdict,
    ShelfVerifyResult,
    find_streams,
    partition_sizes,
)
from appliance.shelf.clonezilla import is_clonezilla

PT_SF = """label: gpt
label-id: 23DC550F-1ACD-ED4F-A893-89FF02E42F84
device: /dev/sda
unit: sectors
first-lba: 2048
last-lba: 614366
sector-size: 512

/dev/sda1 : start=        2048, size=      204800, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
/dev/sda2 : start=      206848, size=      122880, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
"""


def folder_with(tmp_path: Path, names: list[str], parts: str) -> Path:
    folder = tmp_path / "2024-05-01-img"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(b"")
    (folder / "parts").write_text(parts + "\n")
    (folder / "sda-pt.sf").write_text(PT_SF)
    return folder


def test_streams_split_pieces_raw_swap_and_order(tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path,
        [
            "sda10.ext4-ptcl-img.gz.aa", "sda10.ext4-ptcl-img.gz.ab",
            "sda2.ntfs-ptcl-img.zst", "sda1.vfat-ptcl-img.uncomp",
            "sda5.dd-ptcl-img.gz.aa", "sda6.dd-img.aa", "sda7.ntfs-img.aa",
            "swappt-sda3.info", "sda-pt.parted", "sda2-ebr", "blkid.list", "Info-dmi.txt",
            "vg0-root.xfs-ptcl-img.lz4",
        ],
        "sda1 sda2 sda5 sda6 sda7 sda8 sda10",
    )  # fmt: skip
    got = {s.part: s for s in find_streams(folder)}
    order = [s.part for s in find_streams(folder)]
    assert order == ["sda1", "sda2", "sda3", "sda5", "sda6", "sda7", "sda8", "sda10", "vg0-root"]
    assert (got["sda10"].kind, got["sda10"].fs) == ("partclone", "ext4")
    assert got["sda10"].path == folder / "sda10.ext4-ptcl-img.gz"  # split suffix dropped
    assert got["sda1"].path == folder / "sda1.vfat-ptcl-img.uncomp"
    assert (got["sda5"].kind, got["sda5"].fs) == ("raw", "")  # partclone.dd: raw bytes
    assert (got["sda6"].kind, got["sda6"].path) == ("raw", folder / "sda6.dd-img")
    assert (got["sda7"].kind, got["sda7"].note) == ("unsupported", "an ntfsclone image")
    assert got["sda3"].kind == "swap" and got["sda8"].kind == "missing"
    assert got["vg0-root"].fs == "xfs"


def test_what_marks_a_clonezilla_folder_and_the_saved_sizes(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, ["sda1.ext4-ptcl-img.gz"], "sda1")
    assert is_clonezilla(folder)
    (folder / "parts").unlink()
    assert not is_clonezilla(folder)
    (folder / "clonezilla-img").write_text("This image was saved by Clonezilla.\n")
    assert is_clonezilla(folder)
    assert not is_clonezilla(tmp_path / "nothing")
    assert partition_sizes(folder) == {"sda1": 204800 * 512, "sda2": 122880 * 512}


def test_the_image_verdict_puts_damage_before_unreadable_before_missing() -> None:
    def part(name: str, error: Exception | None) -> PartVerdict:
        return PartVerdict(name, "partclone", "ext4", error is None, "", error=error)  # type: ignore[arg-type]

    result = ShelfVerifyResult("img", [part("sda1", None), part("sda2", ImageError("x"))])
    assert isinstance(result.error(), ImageError) and not result.ok
    result.parts.append(part("sda3", UnsupportedImage("y")))
    assert isinstance(result.error(), UnsupportedImage)
    result.parts.append(part("sda4", CorruptData("z")))
    error = result.error()
    assert isinstance(error, CorruptData)
    assert str(error) == "Clonezilla image img is damaged (partitions sda4)."
    assert ShelfVerifyResult("img", [part("sda1", None)]).error() is None

"""The Clonezilla folder model on folders captured from Debian 12's real `ocs-sr` (see
tests/kit/clonezilla.py): every small file as written, each partition stream cut to its
first 512 bytes (the model reads names and magic bytes only).

- gptimg: `ocs-sr -q2 -j2 -z9p -i 0 savedisk` of kit.diskbuild.build_gpt_disk (FAT32 ESP,
  ext4, NTFS, swap), zstd, no split;
- mbrimg: `-q2 -j2 -z1p -i 1` of kit.clonezilla.build_mbr_logical_disk (ext4, extended with
  an ext4 logical and an unformatted logical), gzip, 1 MB pieces;
- rawimg: `-q1 -j2 -z1p -i 0` of kit.clonezilla.build_raw_disk (every partition through
  partclone.dd: raw streams).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.errors import ImageError, UnsupportedImage
from appliance.shelf.clonezilla import find_images, is_clonezilla, load, parse_sfdisk_dump

DATA = Path(__file__).parent / "data" / "clonezilla"
MiB = 1024 * 1024


@pytest.fixture
def shelf(tmp_path: Path) -> Path:
    """A writable copy of the captured folders."""
    out = tmp_path / "shelf"
    shutil.copytree(DATA, out)
    return out


def test_gpt_zstd_image() -> None:
    img = load(DATA / "gptimg")
    assert img.name == "gptimg"
    assert (img.date, img.date_from) == ("2026-12-01T18:00:42+00:00", "clonezilla-img")
    assert img.kind == "Clonezilla image"
    assert img.compressors == ["zstd"]
    assert img.unsupported is None
    (disk,) = img.disks
    assert (disk.name, disk.label, disk.sector_size, disk.size) == ("loop0", "gpt", 512, 500 * MiB)
    assert disk.header["last-lba"] == "1023966"
    assert sorted(disk.boot) == ["gpt-1st", "gpt-2nd", "mbr"]
    got = [(p.number, p.start, p.size, p.fstype, p.method) for p in disk.partitions]
    assert got == [
        (1, 1 * MiB, 64 * MiB, "vfat", "partclone"),
        (2, 65 * MiB, 200 * MiB, "ext4", "partclone"),
        (3, 265 * MiB, 150 * MiB, "ntfs", "partclone"),
        (4, 415 * MiB, 32 * MiB, "swap", "swap"),
    ]
    p1, p2, p3, p4 = disk.partitions
    assert [f.name for f in p2.stream.files] == ["loop0p2.ext4-ptcl-img.zst"]  # type: ignore[union-attr]
    assert p2.type == "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    assert p4.stream is None
    assert (p4.swap_uuid, p4.swap_label) == ("fee17ee0-3f7b-4ac4-b1bb-9e05a6317571", "SWAP")
    assert img.parts == ("loop0p1", "loop0p2", "loop0p3")


def test_mbr_gzip_split_image() -> None:
    img = load(DATA / "mbrimg")
    assert img.compressors == ["gzip"]
    (disk,) = img.disks
    assert (disk.label, disk.size) == ("dos", 300 * MiB)
    assert sorted(disk.boot) == ["ebr", "hidden-data-after-mbr", "mbr"]
    assert disk.boot["ebr"].name == "loop0p2-ebr"
    by_number = {p.number: p for p in disk.partitions}
    assert sorted(by_number) == [1, 2, 5, 6]
    assert by_number[1].bootable and not by_number[5].bootable
    assert by_number[2].extended and by_number[2].method == "extended"
    assert by_number[5].fstype == "ext4"
    raw = by_number[6]
    assert (raw.method, raw.fstype, raw.type) == ("raw", None, "da")
    assert raw.stream is not None
    assert [f.name[-2:] for f in raw.stream.files] == ["aa", "ab", "ac", "ad"]
    assert raw.stream.base.name == "loop0p6.dd-ptcl-img.gz"
    p1 = by_number[1].stream
    assert p1 is not None and [f.name for f in p1.files] == [
        "loop0p1.ext4-ptcl-img.gz.aa",
        "loop0p1.ext4-ptcl-img.gz.ab",
    ]


def test_raw_image_takes_filesystems_from_dev_fs_list() -> None:
    img = load(DATA / "rawimg")
    (disk,) = img.disks
    assert [(p.method, p.fstype) for p in disk.partitions] == [("raw", None), ("raw", "ext4")]


def test_split_pieces_sort_past_26(shelf: Path) -> None:
    folder = shelf / "mbrimg"
    for i in range(30):  # .ba sorts after .az, as split writes them
        name = "abcdefghijklmnopqrstuvwxyz"[i // 26] + "abcdefghijklmnopqrstuvwxyz"[i % 26]
        (folder / f"loop0p5.ext4-ptcl-img.gz.{name}").touch()
    files = load(folder).disks[0].partitions[2].stream.files  # type: ignore[union-attr]
    assert [f.name[-2:] for f in files][24:28] == ["ay", "az", "ba", "bb"]


def test_legacy_dd_img_is_a_gzip_raw_stream(shelf: Path) -> None:
    folder = shelf / "rawimg"
    (folder / "loop1p1.dd-ptcl-img.gz").rename(folder / "loop1p1.dd-img.aa")
    stream = load(folder).disks[0].partitions[0].stream
    assert stream is not None
    assert (stream.kind, stream.compressor, stream.base.name) == ("raw", "gzip", "loop1p1.dd-img")


def test_date_falls_back_to_the_folder_mtime(shelf: Path) -> None:
    folder = shelf / "gptimg"
    (folder / "clonezilla-img").unlink()
    os.utime(folder, (1700000000, 1700000000))
    assert is_clonezilla(folder)  # disk + pt.sf still say so
    img = load(folder)
    assert (img.date, img.date_from) == ("2023-11-14T22:13:20+00:00", "mtime")


def test_rescuezilla_is_named(shelf: Path) -> None:
    (shelf / "gptimg" / "rescuezilla.description.txt").write_text("lab machine\n")
    assert load(shelf / "gptimg").kind == "Rescuezilla image"


@pytest.mark.parametrize(
    "file, words",
    [
        ("lvm_vg_dev.list", "LVM volume groups"),
        ("lvm_vg0.conf", "LVM volume groups"),
        ("luks-dev.list", "LUKS"),
        ("mdadm.conf", "md RAID"),
        ("ecryptfs.info", "ecryptfs"),
        ("loop0p3.ntfs-img.gz", "ntfsclone"),
    ],
)
def test_unsupported_parts_are_one_sentence(shelf: Path, file: str, words: str) -> None:
    (shelf / "gptimg" / file).write_text("x\n")
    sentence = load(shelf / "gptimg").unsupported
    assert sentence is not None and words in sentence
    assert sentence.startswith("The Clonezilla image gptimg cannot be restored here: ")
    assert sentence.count(".") == 1 and sentence.endswith(".")


def test_find_images(shelf: Path) -> None:
    (shelf / "not-an-image").mkdir()
    (shelf / "not-an-image" / "notes.txt").write_text("x")
    assert [p.name for p in find_images(shelf)] == ["gptimg", "mbrimg", "rawimg"]
    assert find_images(shelf / "mbrimg") == [shelf / "mbrimg"]
    assert find_images(shelf / "not-an-image") == []
    assert find_images(shelf / "missing") == []


def test_missing_table_is_a_sentence(shelf: Path) -> None:
    (shelf / "mbrimg" / "loop0-pt.sf").unlink()
    with pytest.raises(ImageError, match=r"has no partition table for loop0 \(loop0-pt.sf"):
        load(shelf / "mbrimg")


def test_sfdisk_dump_fields() -> None:
    header, entries = parse_sfdisk_dump(
        "label: gpt\nunit: sectors\n\n"
        '/dev/sda1 : start=2048, size=4096, type=X, name="a, b", attrs="GUID:63"\n',
        "t",
    )
    assert header == {"label": "gpt", "unit": "sectors"}
    assert entries == [
        {
            "node": "/dev/sda1",
            "start": "2048",
            "size": "4096",
            "type": "X",
            "name": "a, b",
            "attrs": "GUID:63",
        }
    ]
    with pytest.raises(UnsupportedImage, match="'sun' table"):
        parse_sfdisk_dump("label: sun\n", "t")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_images_lists_a_plain_folder(shelf: Path) -> None:
    (shelf / "gptimg" / "lvm_vg_dev.list").write_text("x\n")
    proc = run_cli("images", "--repo", str(shelf), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["images"] == []
    by_name = {s["name"]: s for s in out["shelf"]}
    assert sorted(by_name) == ["gptimg", "mbrimg", "rawimg"]
    mbr = by_name["mbrimg"]
    assert (mbr["kind"], mbr["compressor"], mbr["size"], mbr["restorable"]) == (
        "Clonezilla image",
        "gzip",
        300 * MiB,
        True,
    )
    parts = mbr["disks"][0]["partitions"]
    assert [(p["name"], p["fstype"], p["method"]) for p in parts] == [
        ("loop0p1", "ext4", "partclone"),
        ("loop0p2", None, "extended"),
        ("loop0p5", "ext4", "partclone"),
        ("loop0p6", None, "raw"),
    ]
    assert not by_name["gptimg"]["restorable"]
    assert "LVM" in by_name["gptimg"]["problem"]

    human = run_cli("images", "--repo", str(shelf / "mbrimg"))
    assert human.returncode == 0, human.stderr
    assert "mbrimg" in human.stdout and "Clonezilla image, gzip" in human.stdout
    assert "loop0p1 ext4" in human.stdout and "loop0p6 raw" in human.stdout


def test_old_sfdisk_dump_without_label() -> None:
    """util-linux before 2.26 (Clonezilla images of that time): no label line, Id=, and
    empty slots of size 0."""
    header, entries = parse_sfdisk_dump(
        "# partition table of /dev/sda\nunit: sectors\n\n"
        "/dev/sda1 : start=     2048, size=  1024000, Id=83, bootable\n"
        "/dev/sda2 : start=        0, size=        0, Id= 0\n",
        "t",
    )
    assert header["label"] == "dos"
    assert entries == [
        {"node": "/dev/sda1", "start": "2048", "size": "1024000", "type": "83", "bootable": "yes"}
    ]

"""What a file's disk is read as, before any loop device: the sector size of its GPT (512 or a
4Kn disk's 4096), and a compressed image refused with one sentence (it cannot be read at an
offset without reading all before it)."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from appliance.errors import UnsupportedImage, UsageError
from appliance.shelf.filedisk import FileDisk, describe_file, sector_size_of

MiB = 1024 * 1024


def gpt_file(path: Path) -> Path:
    """A file with a GPT made by sfdisk (512-byte sectors)."""
    with open(path, "wb") as handle:
        handle.truncate(8 * MiB)
    script = "label: gpt\nstart=2048, size=4096, type=L\n"
    subprocess.run(["sfdisk", "-q", str(path)], input=script, text=True, check=True)
    return path


def test_the_sector_size_is_where_the_gpt_header_is(tmp_path: Path) -> None:
    assert sector_size_of(str(gpt_file(tmp_path / "a.img"))) == 512
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(MiB))
    assert sector_size_of(str(blank)) == 512  # no GPT (an MBR disk, or nothing): 512
    four_k = tmp_path / "4k.img"  # a 4Kn disk's primary GPT header: at LBA 1 = byte 4096
    with open(four_k, "wb") as handle:
        handle.truncate(MiB)
        handle.seek(4096)
        handle.write(b"EFI PART")
    assert sector_size_of(str(four_k)) == 4096


def test_a_compressed_image_is_sent_to_write(tmp_path: Path) -> None:
    packed = tmp_path / "disk.img.gz"
    packed.write_bytes(gzip.compress(bytes(MiB)))
    with pytest.raises(UnsupportedImage, match="appliance write"):
        FileDisk(packed)


def test_a_folder_or_a_foreign_file_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a file"):
        FileDisk(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UsageError, match="not a disk image file"):
        FileDisk(tmp_path / "notes.txt")


def test_a_file_is_named_by_its_kind() -> None:
    assert describe_file(Path("/x/pc.qcow2")) == "VM disk file pc.qcow2 (QCOW2)"
    assert describe_file(Path("/x/pc.vhd")) == "VM disk file pc.vhd (VHD)"
    assert describe_file(Path("/x/pc.img")) == "raw image file pc.img"

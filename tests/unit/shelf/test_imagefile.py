"""Image files: what each kind is, its raw size from the container (file, zip entry, xz
index) or from one read, where its data ends, its table's end, and one sentence for a file
that cannot be written."""

from __future__ import annotations

import gzip
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from appliance.errors import CorruptData, ImageError, UnsupportedImage, UsageError
from appliance.shelf import imagefile

MiB = 1024 * 1024
DATA = os.urandom(3 * MiB) + bytes(2 * MiB) + os.urandom(1000) + bytes(MiB + 24)


def raw(tmp_path: Path, name: str = "disk.img", data: bytes = DATA) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_all(image: imagefile.ImageFile) -> bytes:
    with imagefile.open_image(image) as stream:
        return stream.read()


def test_raw_file(tmp_path: Path) -> None:
    image = imagefile.probe(raw(tmp_path, "stick.iso"))
    assert (image.kind, image.size, image.seekable) == ("raw", len(DATA), True)
    assert read_all(image) == DATA
    assert imagefile.scan(image, limit=MiB).size == len(DATA)


def test_where_the_data_ends(tmp_path: Path) -> None:
    expected = len(DATA.rstrip(b"\0"))
    assert 5 * MiB < expected <= 5 * MiB + 1000
    image = imagefile.probe(raw(tmp_path))
    assert imagefile.scan(image, limit=MiB).data_end == expected
    # past `limit` only: a tail read from the end, the head never matters
    assert imagefile.scan(image, limit=len(DATA) - 10).data_end == len(DATA) - 10


def test_xz_size_from_its_index(tmp_path: Path) -> None:
    path = raw(tmp_path)
    subprocess.run(["xz", "-T1", "-0", "-k", str(path)], check=True)
    image = imagefile.probe(tmp_path / "disk.img.xz")
    assert (image.kind, image.size, image.seekable) == ("xz", len(DATA), False)
    assert read_all(image) == DATA


def test_zstd_size_from_its_frame_header_not_from_a_pipe(tmp_path: Path) -> None:
    path = raw(tmp_path)
    subprocess.run(["zstd", "-q", "-1", str(path)], check=True)  # a file: the size is recorded
    image = imagefile.probe(tmp_path / "disk.img.zst")
    assert (image.kind, image.size) == ("zstd", len(DATA))
    piped = tmp_path / "piped.img.zst"
    with open(piped, "wb") as out:
        subprocess.run(["zstd", "-q", "-1", "-c"], input=DATA, stdout=out, check=True)
    image = imagefile.probe(piped)
    assert (image.kind, image.size) == ("zstd", None)
    assert imagefile.scan(image).size == len(DATA)


def test_gzip_size_learnt_by_one_read(tmp_path: Path) -> None:
    path = tmp_path / "disk.img.gz"
    path.write_bytes(gzip.compress(DATA))
    image = imagefile.probe(path)
    assert (image.kind, image.size) == ("gzip", None)
    seen: list[int] = []
    found = imagefile.scan(image, tick=seen.append)
    assert found == imagefile.Scan(len(DATA), len(DATA.rstrip(b"\0")))
    assert sum(seen) == len(DATA)


def test_compressor_found_by_magic_not_by_name(tmp_path: Path) -> None:
    path = tmp_path / "renamed.img"
    path.write_bytes(gzip.compress(DATA))
    image = imagefile.probe(path)
    assert image.kind == "gzip" and read_all(image) == DATA


@pytest.mark.parametrize("packed", [False, True])
def test_split_pieces_read_as_one_file(tmp_path: Path, packed: bool) -> None:
    """`split -b` pieces (`disk.img.aa`, `.ab`, ...), named by the whole file's name."""
    whole = raw(tmp_path)
    if packed:
        whole.with_name("disk.img.gz").write_bytes(gzip.compress(DATA))
        whole.unlink()
        whole = whole.with_name("disk.img.gz")
    subprocess.run(["split", "-b", "1M", str(whole), f"{whole}."], check=True)
    whole.unlink()
    image = imagefile.probe(whole)
    assert image.pieces > 1 and not image.seekable
    assert (image.kind, image.size) == (("gzip", None) if packed else ("raw", len(DATA)))
    assert read_all(image) == DATA
    assert imagefile.scan(image).data_end == len(DATA.rstrip(b"\0"))
    whole.with_name(whole.name + ".ab").unlink()
    with pytest.raises(CorruptData, match=r"\.ab is missing"):
        imagefile.probe(whole)


def test_zip_with_one_image_and_a_readme(tmp_path: Path) -> None:
    path = tmp_path / "download.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", "write me\n")
        archive.writestr("os/stick.img", DATA)
    image = imagefile.probe(path)
    assert (image.kind, image.member, image.size) == ("zip", "os/stick.img", len(DATA))
    assert image.name == "download.zip:os/stick.img"
    assert read_all(image) == DATA


def test_damaged_zip_entry_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "download.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("stick.img", DATA)
    data = bytearray(path.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 32] = bytes(32)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptData, match=r"download\.zip:stick\.img is damaged or cut short"):
        imagefile.scan(imagefile.probe(path))


def test_zip_with_two_images_is_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.img", b"a" * 512)
        archive.writestr("b.iso", b"b" * 512)
    with pytest.raises(ImageError, match=r"holds 2 images \(a.img, b.iso\); extract the one"):
        imagefile.probe(path)


def test_zip_without_an_image(tmp_path: Path) -> None:
    path = tmp_path / "docs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("README.txt", "nothing\n")
    with pytest.raises(ImageError, match="holds no disk image"):
        imagefile.probe(path)


def test_not_a_zip(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="damaged or not a zip file"):
        imagefile.probe(raw(tmp_path, "fake.zip", b"PK nothing"))


def test_unknown_kind_missing_file_and_lzop(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"not a disk image file this tool writes; use .img"):
        imagefile.probe(raw(tmp_path, "disk.dmg"))
    with pytest.raises(UnsupportedImage, match="not a QCOW2 file"):  # a VM disk by its name
        imagefile.probe(raw(tmp_path, "disk.qcow2"))
    with pytest.raises(ImageError, match="does not exist"):
        imagefile.probe(tmp_path / "gone.img")
    lzop = raw(tmp_path, "disk.img.gz", b"\x89LZO\x00\r\n\x1a\n" + bytes(100))
    with pytest.raises(UnsupportedImage, match="compressed with lzop"):
        imagefile.probe(lzop)


def test_cut_short_stream_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "disk.img.gz"
    path.write_bytes(gzip.compress(DATA)[: 2 * MiB])
    with pytest.raises(CorruptData, match=r"disk\.img\.gz is damaged or cut short"):
        imagefile.scan(imagefile.probe(path))


def test_partitions_end_read_from_a_compressed_head(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    with open(path, "wb") as handle:
        handle.truncate(16 * MiB)
    subprocess.run(
        ["sfdisk", "-q", str(path)], input="label: dos\nstart=2048, size=8MiB\n", text=True,
        check=True,
    )  # fmt: skip
    assert imagefile.partitions_end(imagefile.probe(path), 16 * MiB) == ("dos", 9 * MiB)
    packed = tmp_path / "disk.img.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    assert imagefile.partitions_end(imagefile.probe(packed), 16 * MiB) == ("dos", 9 * MiB)
    assert imagefile.partitions_end(imagefile.probe(raw(tmp_path, "blank.bin")), len(DATA)) == (
        None,
        None,
    )

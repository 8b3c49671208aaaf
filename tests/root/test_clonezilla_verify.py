"""verify of Clonezilla images made by Debian's own ocs-sr from loop disks: a GPT disk (FAT32
ESP, ext4, NTFS, swap) saved with zstd, and an MBR disk (ext4, an extended partition with an
unformatted partition saved raw, and swap) saved with gzip split into 1 MB pieces; then the
same folders damaged the ways a shelf damages them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.cli import appliance
from kit.clonezilla import have_ocs_sr, ocs_save
from kit.diskbuild import build_gpt_disk, flush_all, sparse_file
from kit.diskcompare import partition_nodes
from kit.loops import Loops

pytestmark = [pytest.mark.root, pytest.mark.slow]

MiB = 1 << 20


@pytest.fixture(scope="module")
def shelf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Two Clonezilla images in one folder, made by ocs-sr; the disks are gone after."""
    if not have_ocs_sr():
        pytest.skip("needs ocs-sr (Debian package clonezilla)")
    where = tmp_path_factory.mktemp("shelf")
    loops = Loops(where)
    try:
        gpt = build_gpt_disk(loops, where / "gpt.img", seed=3)
        mbr = build_small_mbr_disk(loops, where / "mbr.img")
        folders = {
            "gpt": ocs_save(gpt, where / "repo", "gpt-zst", "-q2", "-z9p", "-i", "0"),
            "mbr": ocs_save(mbr, where / "repo", "mbr-gz-split", "-q2", "-z1p", "-i", "1"),
            "gpt_node": Path(gpt),
            "mbr_node": Path(mbr),
        }
    finally:
        loops.cleanup()
    yield folders


def build_small_mbr_disk(loops: Loops, path: Path) -> str:
    """DOS disk: p1 ext4 with files, p2 extended holding p5 (no filesystem: random bytes
    then zeros, which Clonezilla saves raw) and p6 swap."""
    sparse_file(path.parent, path.name, 160 * MiB)
    node = loops.attach(path)
    script = "label: dos\nstart=2048, size=60MiB, type=83\nsize=90MiB, type=5\n"
    script += f"{node}p5 : size=24MiB, type=83\n{node}p6 : size=16MiB, type=82\n"
    subprocess.run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", node], input=script,
                   text=True, check=True)  # fmt: skip
    parts = partition_nodes(node)  # this kernel has no partition-table parser: partx
    files = path.parent / "mbr-files"
    files.mkdir()
    (files / "random.bin").write_bytes(os.urandom(3 * MiB))
    (files / "notes.txt").write_text("a shelf of images\n" * 5000)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(files), parts[1]], check=True)
    with open(parts[5], "r+b") as part:
        part.write(os.urandom(2 * MiB))
    subprocess.run(["mkswap", "-q", parts[6]], check=True)
    flush_all(node)
    return node


def copy(folder: Path, where: Path) -> Path:
    return Path(shutil.copytree(folder, where / folder.name))


def verify(folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return appliance(
        "verify", "--repo", str(folder.parent), "--image", folder.name, "--progress", "none",
        *extra, check=False,
    )  # fmt: skip


def test_images_made_by_ocs_sr_verify_intact(shelf: dict[str, Path]) -> None:
    gpt, mbr = shelf["gpt_node"].name, shelf["mbr_node"].name
    proc = verify(shelf["gpt"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.replace("\n      ", " ").splitlines()
    assert lines[0].startswith(f"  {gpt}p1 (vfat): partclone image (zstd, format 0002), intact")
    assert lines[1].startswith(f"  {gpt}p2 (ext4): partclone image (zstd, format 0002), intact")
    assert lines[2].startswith(f"  {gpt}p3 (ntfs): partclone image (zstd, format 0002), intact")
    assert lines[3] == f"  {gpt}p4 (swap): nothing saved, made anew on restore."
    assert lines[4].startswith("Clonezilla image gpt-zst is intact: 4 partitions checked")

    assert len(list(shelf["mbr"].glob(f"{mbr}p5.*.aa"))) == 1  # ocs-sr split the raw stream
    proc = verify(shelf["mbr"], "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    parts = {p["partition"]: p for p in result["partitions"]}
    assert result["ok"] is True and result["format"] == "clonezilla"
    assert [parts[f"{mbr}p{n}"]["kind"] for n in (1, 5, 6)] == ["partclone", "raw", "swap"]
    assert parts[f"{mbr}p5"]["bytes"] == 24 * MiB  # the whole partition, as its table says
    assert all(p["ok"] for p in parts.values())


def test_a_flipped_byte_in_a_block_fails_verify_and_names_the_partition(
    shelf: dict[str, Path], tmp_path: Path
) -> None:
    folder = copy(shelf["gpt"], tmp_path)
    node = shelf["gpt_node"].name
    (stream,) = folder.glob(f"{node}p2.ext4-ptcl-img.zst")
    raw = bytearray(
        subprocess.run(["zstd", "-dc", str(stream)], capture_output=True, check=True).stdout
    )
    raw[len(raw) // 2] ^= 0x10  # in the data part: the description and bitmap are small
    (tmp_path / "p2.img").write_bytes(bytes(raw))
    chk = subprocess.run(["partclone.chkimg", "-f", "0", "-s", str(tmp_path / "p2.img"), "-L",
                          str(tmp_path / "chk.log")], capture_output=True, text=True)  # fmt: skip
    assert "successfully" not in chk.stdout + chk.stderr  # partclone's own check agrees
    stream.write_bytes(
        subprocess.run(
            ["zstd", "-q", "-c"], input=bytes(raw), capture_output=True, check=True
        ).stdout
    )

    proc = verify(folder)
    assert proc.returncode == 9, proc.stdout + proc.stderr
    lines = proc.stdout.replace("\n      ", " ").splitlines()
    assert f"{node}p1 (vfat): partclone image" in lines[0] and "intact" in lines[0]
    assert lines[1].startswith(
        f"  {node}p2 (ext4): partition {node}p2 of Clonezilla image gpt-zst is damaged: "
        "the checksum of its block"
    )
    assert "intact" in lines[2]
    assert (
        proc.stderr.strip()
        == f"appliance: Clonezilla image gpt-zst is damaged (partitions {node}p2)."
    )


def test_a_damaged_bitmap_and_a_cut_stream_are_one_line_each(
    shelf: dict[str, Path], tmp_path: Path
) -> None:
    folder = copy(shelf["gpt"], tmp_path)
    node = shelf["gpt_node"].name
    (ntfs,) = folder.glob(f"{node}p3.ntfs-ptcl-img.zst")
    raw = bytearray(
        subprocess.run(["zstd", "-dc", str(ntfs)], capture_output=True, check=True).stdout
    )
    raw[120] ^= 0x01  # the bitmap follows the 110-byte description
    ntfs.write_bytes(
        subprocess.run(
            ["zstd", "-q", "-c"], input=bytes(raw), capture_output=True, check=True
        ).stdout
    )
    (esp,) = folder.glob(f"{node}p1.vfat-ptcl-img.zst")
    whole = esp.read_bytes()
    esp.write_bytes(whole[: len(whole) * 2 // 3])
    proc = verify(folder)
    assert proc.returncode == 9
    lines = proc.stdout.replace("\n      ", " ").splitlines()
    assert "is damaged or cut short" in lines[0]  # the zstd frame ends early
    assert f"The bitmap of partition {node}p3 of Clonezilla image gpt-zst is damaged" in lines[2]
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_a_missing_split_piece_of_a_raw_stream_fails_verify(
    shelf: dict[str, Path], tmp_path: Path
) -> None:
    node = shelf["mbr_node"].name
    for gone in (-1, 1):  # the last piece (the gzip stream ends early), a middle one
        folder = copy(shelf["mbr"], tmp_path / f"without{gone}")
        pieces = sorted(folder.glob(f"{node}p5.*.a?"))
        assert len(pieces) >= 3
        pieces[gone].unlink()
        proc = verify(folder)
        assert proc.returncode == 9, proc.stdout + proc.stderr
        out = proc.stdout.replace("\n      ", " ")
        (line,) = [x for x in out.splitlines() if x.startswith(f"  {node}p5: ")]
        if gone == -1:
            assert f"partition {node}p5 of Clonezilla image mbr-gz-split" in line
            assert "cut short" in line
        else:
            assert f"Split piece {pieces[1].name} is missing" in line
        assert (
            proc.stderr
            == f"appliance: Clonezilla image mbr-gz-split is damaged (partitions {node}p5).\n"
        )

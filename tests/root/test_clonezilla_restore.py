"""Clonezilla image folders made by Debian 12's real `ocs-sr` from loop disks, listed by
`images` and restored by `restore`, each restored disk compared with its source by
independent tools (tables, fsck, identities, file trees, NTFS backup boot sector, boot code,
the gap after the MBR).

Images (built once per module):
- gpt: kit.diskbuild.build_gpt_disk (FAT32 ESP, ext4, NTFS, swap), `-q2 -z9p -i 0` (zstd);
  its GPT gap (LBA 34..2047) is zeroed first: Clonezilla saves that gap on MBR disks only;
- mbr: kit.clonezilla.build_mbr_logical_disk (ext4, extended: ext4 logical and an
  unformatted logical), `-q2 -z1p -i 1` (gzip, 1 MB pieces; the unformatted partition goes
  through partclone.dd as a raw stream);
- raw: kit.clonezilla.build_raw_disk, `-q1 -z1p -i 0` (every partition a raw stream); a copy
  renamed as old Clonezilla's `PART.dd-img` is restored too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard
from kit.cli import appliance, file_digest, refused, result_json
from kit.clonezilla import (
    MBR_DISK_SIZE,
    RAW_DISK_SIZE,
    build_mbr_logical_disk,
    build_raw_disk,
    have_ocs_sr,
    ocs_save,
    raw_noise,
)
from kit.diskbuild import GPT_DISK_SIZE, MiB, build_gpt_disk, sparse_file, write_raw
from kit.diskcompare import assert_equivalent, partition_nodes, read_bytes
from kit.loops import Loops

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(not have_ocs_sr(), reason="needs ocs-sr (apt install clonezilla drbl)"),
]


@dataclass
class Shelf:
    folder: Path
    sources: dict[str, tuple[str, Path]]  # image -> (source node, its file)
    loops: Loops


@pytest.fixture(scope="module")
def shelf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shelf]:
    root = tmp_path_factory.mktemp("clonezilla")
    loops = Loops(root)
    try:
        folder = root / "shelf"
        gpt = build_gpt_disk(loops, root / "gpt.img")
        write_raw(gpt, 34 * 512, bytes((2048 - 34) * 512))  # Clonezilla cannot carry it
        ocs_save(gpt, folder, "gpt", "-q2", "-z9p", "-i", "0")
        mbr = build_mbr_logical_disk(loops, root / "mbr.img")
        ocs_save(mbr, folder, "mbr", "-q2", "-z1p", "-i", "1")
        raw = build_raw_disk(loops, root / "raw.img")
        ocs_save(raw, folder, "raw", "-q1", "-z1p", "-i", "0")
        sources = {
            "gpt": (gpt, root / "gpt.img"),
            "mbr": (mbr, root / "mbr.img"),
            "raw": (raw, root / "raw.img"),
        }
        yield Shelf(folder, sources, loops)
    finally:
        loops.cleanup()


def blank(shelf: Shelf, tmp_path: Path, size: int) -> tuple[str, Path]:
    path = sparse_file(tmp_path, f"target-{size}.img", size)
    return shelf.loops.attach(path), path


def restore(
    shelf: Shelf, image: str, target: str, *extra: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return appliance(
        "restore", "--repo", str(shelf.folder), "--image", image, target, "--yes", *extra,
        check=check,
    )  # fmt: skip


def test_images_lists_the_real_folders(shelf: Shelf) -> None:
    out = result_json(appliance("images", "--repo", str(shelf.folder), "--json"))
    assert out["images"] == []
    by_name = {s["name"]: s for s in out["shelf"]}
    assert sorted(by_name) == ["gpt", "mbr", "raw"]
    assert [by_name[n]["compressor"] for n in ("gpt", "mbr", "raw")] == ["zstd", "gzip", "gzip"]
    assert all(s["restorable"] and s["kind"] == "Clonezilla image" for s in out["shelf"])
    gpt = by_name["gpt"]["disks"][0]
    assert gpt["size"] == GPT_DISK_SIZE
    assert [p["fstype"] for p in gpt["partitions"]] == ["vfat", "ext4", "ntfs", "swap"]
    mbr = by_name["mbr"]["disks"][0]["partitions"]
    assert len(mbr[0]["files"]) >= 2  # split into 1 MB pieces
    assert [p["method"] for p in mbr] == ["partclone", "extended", "partclone", "raw"]


def test_gpt_zstd_same_size(shelf: Shelf, tmp_path: Path) -> None:
    src, _ = shelf.sources["gpt"]
    dst, _ = blank(shelf, tmp_path, GPT_DISK_SIZE)
    plan = result_json(
        appliance("restore", "--repo", str(shelf.folder), "--image", "gpt", dst,
                  "--dry-run", "--json")
    )  # fmt: skip
    names = [s["step"] for s in plan["steps"]]
    assert names.count("ShelfPartition") == 3
    assert "NtfsBackupBoot" in names and "RecreateSwap" in names
    assert names[0] == "MarkIncomplete" and names[-2:] == ["WriteTableLast", "TellKernel"]
    restore(shelf, "gpt", dst)
    assert_equivalent(src, dst)  # NTFS backup boot sector and swap identity included


def test_gpt_zstd_onto_a_larger_disk(shelf: Shelf, tmp_path: Path) -> None:
    src, _ = shelf.sources["gpt"]
    dst, _ = blank(shelf, tmp_path, GPT_DISK_SIZE + 200 * MiB)
    restore(shelf, "gpt", dst)
    # the last data partition (NTFS) grows, swap after it moves
    assert_equivalent(src, dst, same_size=False, resized={3}, moved={4})


def test_mbr_gzip_split_with_logicals(shelf: Shelf, tmp_path: Path) -> None:
    src, _ = shelf.sources["mbr"]
    dst, _ = blank(shelf, tmp_path, MBR_DISK_SIZE)
    restore(shelf, "mbr", dst)
    assert_equivalent(src, dst)  # the gap after the MBR came from hidden-data-after-mbr
    a, b = partition_nodes(src)[6], partition_nodes(dst)[6]
    assert read_bytes(b, 0, len(raw_noise(0))) == raw_noise(0)
    assert read_bytes(a, 0, 40 * MiB) == read_bytes(b, 0, 40 * MiB)


def test_raw_streams_and_old_dd_img(shelf: Shelf, tmp_path: Path) -> None:
    src, _ = shelf.sources["raw"]
    old = tmp_path / "old"
    shutil.copytree(shelf.folder / "raw", old / "raw")
    stream = old / "raw" / f"{Path(src).name}p1.dd-ptcl-img.gz"
    stream.rename(old / "raw" / f"{Path(src).name}p1.dd-img")  # old Clonezilla's name
    for folder in (shelf.folder, old):
        dst, _ = blank(shelf, tmp_path, RAW_DISK_SIZE + (MiB if folder == old else 0))
        appliance("restore", "--repo", str(folder), "--image", "raw", dst, "--yes")
        assert read_bytes(partition_nodes(dst)[1], 0, 16 * MiB) == read_bytes(
            partition_nodes(src)[1], 0, 16 * MiB
        )
        if folder == shelf.folder:
            assert_equivalent(src, dst)


def test_too_small_target_is_refused_unwritten(shelf: Shelf, tmp_path: Path) -> None:
    dst, path = blank(shelf, tmp_path, 300 * MiB)
    before = file_digest(path)
    proc = restore(shelf, "gpt", dst, check=False)
    refused(proc, 5, "is too small for the Clonezilla image gpt")
    assert file_digest(path) == before


def test_unsupported_parts_refused_before_a_write(shelf: Shelf, tmp_path: Path) -> None:
    copy = tmp_path / "lvm"
    shutil.copytree(shelf.folder / "mbr", copy / "mbr")
    (copy / "mbr" / "lvm_vg_dev.list").write_text("/dev/sda5 vg0 abc\n")
    dst, path = blank(shelf, tmp_path, MBR_DISK_SIZE)
    before = file_digest(path)
    proc = appliance("restore", "--repo", str(copy), "--image", "mbr", dst, "--yes", check=False)
    refused(proc, 8, "cannot be restored here: it holds LVM volume groups")
    assert file_digest(path) == before


def test_flipped_byte_in_a_partclone_block(shelf: Shelf, tmp_path: Path) -> None:
    """The ext4 stream with one byte flipped inside a data block: --verify-first finds it by
    its checksum and names the partition, before the target is touched."""
    src, _ = shelf.sources["gpt"]
    copy = tmp_path / "flip" / "gpt"
    shutil.copytree(shelf.folder / "gpt", copy)
    stream = copy / f"{Path(src).name}p2.ext4-ptcl-img.zst"
    data = bytearray(zstandard.ZstdDecompressor().stream_reader(stream.read_bytes()).read())
    data[len(data) // 2] ^= 0x40  # well inside the blocks, past header and bitmap
    stream.write_bytes(zstandard.ZstdCompressor().compress(bytes(data)))
    dst, path = blank(shelf, tmp_path, GPT_DISK_SIZE)
    before = file_digest(path)
    proc = appliance(
        "restore", "--repo", str(copy.parent), "--image", "gpt", dst, "--yes", "--verify-first",
        check=False,
    )  # fmt: skip
    sentence = refused(proc, 9, "p2 (ext4)")
    assert "gpt" in sentence
    assert file_digest(path) == before


def test_cut_gzip_piece_is_one_sentence(shelf: Shelf, tmp_path: Path) -> None:
    copy = tmp_path / "cut" / "mbr"
    shutil.copytree(shelf.folder / "mbr", copy)
    pieces = sorted(copy.glob("*p5.ext4-ptcl-img.gz.*"))
    pieces[-1].unlink()  # the last piece is lost
    dst, path = blank(shelf, tmp_path, MBR_DISK_SIZE)
    before = file_digest(path)
    proc = appliance(
        "restore", "--repo", str(copy.parent), "--image", "mbr", dst, "--yes", "--verify-first",
        check=False,
    )  # fmt: skip
    refused(proc, 9, "p5")
    assert file_digest(path) == before


def test_the_interface_restores_a_clonezilla_image(shelf: Shelf, tmp_path: Path) -> None:
    """What the TUI's Restore screen runs: the engine backend lists the folder's Clonezilla
    images, plans the restore (every stream read through before the first write) and runs
    it through the same write plan."""
    import threading

    from appliance.progress import Progress
    from tui.backend import EngineBackend

    backend = EngineBackend(include_loop=True)
    listed = {i.name: i for i in backend.images(str(shelf.folder))}
    assert listed["mbr"].kind == "Clonezilla image"
    src, _ = shelf.sources["mbr"]
    dst, _ = blank(shelf, tmp_path, MBR_DISK_SIZE)
    plan = backend.plan_restore(str(shelf.folder), "mbr", dst)
    assert plan.verify_first and "clonezilla image mbr" in plan.source
    assert any("partition 5" in line for line in plan.text.layout), plan.text.layout
    summary = backend.write_job(plan).run(Progress(), threading.Event())
    assert "Restored clonezilla image mbr" in summary.lines[0], summary.lines
    assert_equivalent(src, dst)


def test_a_damaged_filesystem_in_the_image_is_said_after_the_restore(
    shelf: Shelf, tmp_path: Path
) -> None:
    """An image of another tool was never proven: an ext4 whose file inode was cleared (its
    directory entry kept) saves and restores byte for byte, and the restore says that its
    checker fails, naming the partition; a clean image gets no warning (the tests above)."""
    root = tmp_path / "damaged"
    root.mkdir()
    src = build_raw_disk(shelf.loops, root / "src.img", seed=3)
    part = partition_nodes(src)[2]
    listing = run_text("debugfs", "-R", "ls -l /", part)
    inode = next(
        int(line.split()[0])
        for line in listing.splitlines()
        if line.split() and line.split()[0].isdigit() and int(line.split()[0]) > 11
    )
    run_text("debugfs", "-w", "-R", f"clri <{inode}>", part)
    assert subprocess.run(["e2fsck", "-fn", part], capture_output=True).returncode != 0
    ocs_save(src, root / "shelf", "broken", "-q2", "-z9p", "-i", "0")
    dst, _ = blank(shelf, tmp_path, RAW_DISK_SIZE)
    proc = appliance(
        "restore", "--repo", str(root / "shelf"), "--image", "broken", dst, "--yes",
        check=False,
    )  # fmt: skip
    assert proc.returncode == 20, proc.stdout + proc.stderr
    (warning,) = [x for x in proc.stderr.splitlines() if x.startswith("warning:")]
    assert "Clonezilla image broken holds a damaged ext4 in partition 2" in warning
    assert "Traceback" not in proc.stderr
    table = json.loads(run_text("sfdisk", "--json", dst))["partitiontable"]
    assert table["label"] == "gpt"  # restored: the disk holds what the image holds


def run_text(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    return proc.stdout + proc.stderr

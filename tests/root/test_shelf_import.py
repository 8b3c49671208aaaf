"""import of Clonezilla image folders made by Debian 12's real `ocs-sr`: an imported image
restores with our own `restore` onto a disk equal to its source (tables, fsck, identities,
file trees, NTFS backup boot sector, boot code); a second near-identical image stores
little; `images` lists them as our images; a folder with parts this appliance cannot
import is refused with one sentence before anything is written.

Shelf (built once per module, kit.czshelf): pc1 is kit.diskbuild.build_gpt_disk (FAT32 ESP,
ext4, NTFS, swap) saved with `-q2 -z9p -i 0` (zstd); pc2 is a copy of that disk with a new
~1 MiB file and 4 KiB of another file changed, saved the same way. One more image, of
kit.clonezilla.build_mbr_logical_disk (`-q2 -z1p -i 1`: gzip, 1 MB pieces, a raw stream),
carries the gap after the MBR, the EBRs and a partclone.dd partition.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard
from kit.cli import appliance, chunk_files, refused, result_json
from kit.clonezilla import (
    MBR_DISK_SIZE,
    build_mbr_logical_disk,
    have_ocs_sr,
    ocs_save,
    raw_noise,
)
from kit.czshelf import CzShelf, build_shelf
from kit.diskbuild import GPT_DISK_SIZE, MiB, sparse_file
from kit.diskcompare import assert_equivalent, partition_nodes, read_bytes
from kit.loops import Loops

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(not have_ocs_sr(), reason="needs ocs-sr (apt install clonezilla drbl)"),
]


@dataclass
class Office:
    shelf: CzShelf
    repo: Path
    loops: Loops
    root: Path


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    root = tmp_path_factory.mktemp("shelfimport")
    loops = Loops(root)
    try:
        shelf = build_shelf(loops, root, 2)
        yield Office(shelf, root / "office", loops, root)
    finally:
        loops.cleanup()


def imported(office: Office, image: str, *extra: str) -> dict[str, object]:
    out = result_json(
        appliance(
            "import", "--repo", str(office.repo), "--from", str(office.shelf.folder),
            "--image", image, "--create", "--json", *extra,
        )
    )  # fmt: skip
    [done] = out["images"]
    assert isinstance(done, dict)
    return done


def test_imported_image_restores_to_a_disk_equal_to_its_source(office: Office) -> None:
    done = imported(office, "pc1")
    assert done["image"] == "pc1" and done["warnings"] == []
    manifest = json.loads((office.repo / "images/pc1/manifest.json").read_text())
    assert manifest["complete"] and manifest["disk"]["size"] == GPT_DISK_SIZE
    assert manifest["table"]["sfdisk"]["label"] == "gpt"
    regions = {r["name"]: r for r in manifest["regions"]}
    assert [r["method"] for r in manifest["regions"]] == [
        "table", "partclone", "partclone", "partclone", "swap",
    ]  # fmt: skip
    assert [regions[n]["fstype"] for n in ("p1", "p2", "p3", "p4")] == [
        "vfat", "ext4", "ntfs", "swap",
    ]  # fmt: skip
    assert regions["p3"]["label"] == "DATA" and regions["p4"]["label"] == "SWAP"
    # the filesystem proofs ran on the stored image, as a save's do
    assert [regions[n]["proof"]["result"] for n in ("p1", "p2", "p3")] == ["passed"] * 3
    appliance("verify", "--repo", str(office.repo), "--image", "pc1")

    source, _ = office.shelf.disks["pc1"]
    target = office.loops.attach(sparse_file(office.root, "target.img", GPT_DISK_SIZE))
    appliance("restore", "--repo", str(office.repo), "--image", "pc1", target, "--yes")
    # NTFS backup boot sector (never in a partclone stream), swap identity, boot code included
    assert_equivalent(source, target, same_size=True)
    office.loops.detach(target)


def test_a_near_identical_second_image_stores_little(office: Office) -> None:
    if not (office.repo / "images/pc1").is_dir():
        imported(office, "pc1")
    before = chunk_files(office.repo)
    first = json.loads((office.repo / "images/pc1/manifest.json").read_text())["stats"]
    second = imported(office, "pc2")
    added = chunk_files(office.repo) - before
    print(
        f"pc1 stored {first['new_bytes']} bytes ({first['new_chunks']} chunks); pc2 stored "
        f"{second['new_bytes']} bytes ({second['new_chunks']} chunks, "
        f"{second['reused_chunks']} reused)"
    )
    assert isinstance(second["new_bytes"], int) and isinstance(second["reused_chunks"], int)
    assert len(added) == second["new_chunks"]
    # the second disk differs by ~1 MiB of random bytes: it stores about that, not a disk
    assert second["new_bytes"] < first["new_bytes"] / 2
    assert second["new_bytes"] < 3 * MiB
    assert second["reused_chunks"] > 0
    listing = result_json(appliance("images", "--repo", str(office.repo), "--json"))
    ours = {i["name"]: i for i in listing["images"]}
    assert {"pc1", "pc2"} <= set(ours)
    assert all(ours[n]["complete"] for n in ("pc1", "pc2"))


def test_unsupported_parts_are_refused_before_anything_is_written(office: Office) -> None:
    shelf = office.root / "mixed"
    shutil.copytree(office.shelf.folder / "pc2", shelf / "pc2")
    shutil.copytree(office.shelf.folder / "pc2", shelf / "vg")
    (shelf / "vg" / "lvm_vg_dev.list").write_text("/dev/sda5 vg0 abc\n")
    repo = office.root / "untouched"
    # every folder there (pc2 and vg): vg is refused before pc2 is stored
    proc = appliance("import", "--repo", str(repo), "--from", str(shelf), "--create", check=False)
    refused(proc, 8, "The Clonezilla image vg cannot be imported here: it holds LVM volume groups")
    assert not repo.exists()


def test_a_folder_that_holds_no_image_is_one_sentence(office: Office) -> None:
    empty = office.root / "empty"
    empty.mkdir()
    proc = appliance("import", "--repo", str(office.repo), "--from", str(empty), check=False)
    refused(proc, 8, "nor a Clonezilla or Rescuezilla image folder")


def test_mbr_image_with_logicals_and_a_raw_stream(office: Office) -> None:
    """kit.clonezilla.build_mbr_logical_disk saved with gzip in 1 MB pieces: the gap after
    the MBR (hidden-data-after-mbr), the EBRs and a partclone.dd raw stream go through the
    import and our restore."""
    path = office.root / "mbr.img"
    source = build_mbr_logical_disk(office.loops, path)
    folder = office.root / "mbrshelf"
    ocs_save(source, folder, "mbr", "-q2", "-z1p", "-i", "1")
    repo = office.root / "mbrrepo"
    appliance("import", "--repo", str(repo), "--from", str(folder / "mbr"), "--create")
    manifest = json.loads((repo / "images/mbr/manifest.json").read_text())
    assert [r["method"] for r in manifest["regions"]] == ["table", "partclone", "partclone", "raw"]
    assert [r["name"] for r in manifest["regions"]] == ["outside", "p1", "p5", "p6"]
    target = office.loops.attach(sparse_file(office.root, "mbr-target.img", MBR_DISK_SIZE))
    appliance("restore", "--repo", str(repo), "--image", "mbr", target, "--yes")
    assert_equivalent(source, target, same_size=True)
    assert read_bytes(partition_nodes(target)[6], 0, 40 * MiB) == read_bytes(
        partition_nodes(source)[6], 0, 40 * MiB
    )
    assert read_bytes(partition_nodes(target)[6], 0, len(raw_noise(0))) == raw_noise(0)
    office.loops.detach(target)


def test_a_flipped_byte_in_a_partclone_block_stops_the_import(office: Office) -> None:
    """One byte flipped inside the ext4 stream's blocks: partclone's own checksum finds it
    while the import reads it; the image is not offered for restore."""
    copy = office.root / "flip" / "pc1"
    shutil.copytree(office.shelf.folder / "pc1", copy)
    node, _ = office.shelf.disks["pc1"]
    stream = copy / f"{Path(node).name}p2.ext4-ptcl-img.zst"
    data = bytearray(zstandard.ZstdDecompressor().stream_reader(stream.read_bytes()).read())
    data[len(data) // 2] ^= 0x40  # well inside the blocks, past header and bitmap
    stream.write_bytes(zstandard.ZstdCompressor().compress(bytes(data)))
    repo = office.root / "fliprepo"
    proc = appliance("import", "--repo", str(repo), "--from", str(copy), "--create", check=False)
    sentence = refused(proc, 9, "p2 (ext4)")
    assert "pc1" in sentence
    images = result_json(appliance("images", "--repo", str(repo), "--json"))["images"]
    assert not any(i["restorable"] for i in images)

"""Clone and fit: disk to disk, and restore or clone onto larger and smaller disks.

The source is never written (its image file's digest is checked); the target is compared
with the source by independent tools, with the partitions that were meant to resize or
move named, and each resized filesystem's own size read back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit.cli import appliance, file_digest, refused, result_json
from kit.diskbuild import (
    GPT_DISK_SIZE,
    MBR_DISK_SIZE,
    MiB,
    build_gpt_disk,
    build_mbr_disk,
    sparse_file,
)
from kit.diskcompare import assert_equivalent, partition_nodes, table
from kit.fsinfo import fs_size
from kit.loops import Loops

pytestmark = pytest.mark.root


@dataclass
class Source:
    loops: Loops
    folder: Path
    gpt: str
    gpt_file: Path
    mbr: str
    mbr_file: Path
    repo: Path


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    folder = tmp_path_factory.mktemp("fit")
    loops = Loops(folder)
    try:
        gpt = build_gpt_disk(loops, folder / "gpt.img")
        mbr = build_mbr_disk(loops, folder / "mbr.img")
        repo = folder / "repo"
        appliance("save", gpt, "--repo", str(repo), "--image", "gpt", "--create")
        yield Source(loops, folder, gpt, folder / "gpt.img", mbr, folder / "mbr.img", repo)
    finally:
        loops.cleanup()


def target(src: Source, tmp_path: Path, size: int) -> tuple[str, Path]:
    path = sparse_file(tmp_path, "target.img", size)
    return src.loops.attach(path), path


def check_resized(source: str, dst: str, sector: int, resized: dict[int, str]) -> None:
    layout = table(dst, ignore_size=True)["partitions"]
    src_parts, dst_parts = partition_nodes(source), partition_nodes(dst)
    for number, fstype in resized.items():
        part_size = layout[number]["size"] * sector
        old = fs_size(src_parts[number], fstype)
        new = fs_size(dst_parts[number], fstype)
        assert part_size * 0.97 < new <= part_size, (number, old, new, part_size)


def clone(src: Source, source: str, dst: str, *extra: str) -> None:
    before = file_digest(src.gpt_file if source == src.gpt else src.mbr_file)
    appliance("clone", source, dst, "--yes", *extra)
    assert file_digest(src.gpt_file if source == src.gpt else src.mbr_file) == before, (
        "clone wrote to its source"
    )


def test_clone_same_size(src: Source, tmp_path: Path) -> None:
    dst, _ = target(src, tmp_path, GPT_DISK_SIZE)
    clone(src, src.gpt, dst)
    assert_equivalent(src.gpt, dst, same_size=True)
    src.loops.detach(dst)


def test_clone_larger_grows_last_partition(src: Source, tmp_path: Path) -> None:
    size = GPT_DISK_SIZE * 3 // 2
    dst, _ = target(src, tmp_path, size)
    clone(src, src.gpt, dst)
    assert_equivalent(src.gpt, dst, same_size=False, resized={3}, moved={4})
    check_resized(src.gpt, dst, 512, {3: "ntfs"})
    layout = table(dst, ignore_size=True)["partitions"]
    assert size - (layout[4]["start"] + layout[4]["size"]) * 512 < 2 * MiB  # swap at the end
    assert (
        fs_size(partition_nodes(dst)[3], "ntfs")
        > fs_size(partition_nodes(src.gpt)[3], "ntfs") + 200 * MiB
    )
    src.loops.detach(dst)


def test_clone_larger_mbr_with_extended(src: Source, tmp_path: Path) -> None:
    dst, _ = target(src, tmp_path, MBR_DISK_SIZE * 3 // 2)
    clone(src, src.mbr, dst)
    assert_equivalent(src.mbr, dst, same_size=False, resized={2, 6})
    check_resized(src.mbr, dst, 512, {6: "btrfs"})
    src.loops.detach(dst)


def test_clone_grow_named_partition(src: Source, tmp_path: Path) -> None:
    dst, _ = target(src, tmp_path, GPT_DISK_SIZE * 3 // 2)
    clone(src, src.gpt, dst, "--grow", "2")
    assert_equivalent(src.gpt, dst, same_size=False, resized={2}, moved={3, 4})
    check_resized(src.gpt, dst, 512, {2: "ext4"})
    src.loops.detach(dst)


@pytest.mark.parametrize("job", ["restore", "clone"])
@pytest.mark.parametrize(
    "grow, resized, moved",
    [
        (None, {3: "ntfs"}, {4}),  # the NTFS partition shrinks
        ("2", {2: "ext4"}, {3, 4}),  # the ext4 partition shrinks, the rest move down
    ],
    ids=["ntfs", "ext4"],
)
def test_smaller_target_when_data_fits(
    src: Source,
    tmp_path: Path,
    job: str,
    grow: str | None,
    resized: dict[int, str],
    moved: set[int],
) -> None:
    size = 400 * MiB  # the partitions end at 447 MiB on the source
    dst, _ = target(src, tmp_path, size)
    extra = ["--grow", grow] if grow else []
    if job == "clone":
        clone(src, src.gpt, dst, *extra)
    else:
        appliance("restore", "--repo", str(src.repo), "--image", "gpt", dst, "--yes", *extra)
    assert_equivalent(src.gpt, dst, same_size=False, resized=set(resized), moved=moved)
    check_resized(src.gpt, dst, 512, resized)
    [(number, fstype)] = resized.items()
    assert fs_size(partition_nodes(dst)[number], fstype) < fs_size(
        partition_nodes(src.gpt)[number], fstype
    )
    src.loops.detach(dst)


def test_dry_run_shows_the_fit(src: Source, tmp_path: Path) -> None:
    dst, path = target(src, tmp_path, 400 * MiB)
    before = file_digest(path)
    out = result_json(
        appliance("restore", "--repo", str(src.repo), "--image", "gpt", dst, "--dry-run", "--json")
    )
    parts = {p["number"]: p for p in out["fit"]["partitions"]}
    assert out["fit"]["resize"] == 3
    assert parts[3]["new_size"] < parts[3]["old_size"]
    assert parts[4]["new_start"] < parts[4]["old_start"]
    assert parts[1]["new_start"] == parts[1]["old_start"]
    text = appliance("clone", src.gpt, dst, "--dry-run").stdout
    flat = " ".join(text.split())  # the plan's lines are wrapped to 80 columns
    assert "filesystem shrinks" in flat and "will be ERASED" in flat
    assert file_digest(path) == before
    json.dumps(out)


@pytest.mark.parametrize("job", ["restore", "clone"])
def test_smaller_target_when_data_does_not_fit(src: Source, tmp_path: Path, job: str) -> None:
    dst, path = target(src, tmp_path, 150 * MiB)
    before = file_digest(path)
    if job == "clone":
        proc = appliance("clone", src.gpt, dst, "--yes", check=False)
    else:
        proc = appliance(
            "restore", "--repo", str(src.repo), "--image", "gpt", dst, "--yes", check=False
        )
    refused(proc, 5, "does not fit")
    assert file_digest(path) == before


def test_xfs_cannot_shrink(src: Source, tmp_path: Path) -> None:
    dst, path = target(src, tmp_path, 500 * MiB)
    before = file_digest(path)
    proc = appliance("clone", src.mbr, dst, "--yes", "--grow", "5", check=False)
    refused(proc, 5, "XFS, which cannot shrink")
    assert file_digest(path) == before


def test_clone_onto_itself_is_refused(src: Source) -> None:
    before = file_digest(src.gpt_file)
    refused(
        appliance("clone", src.gpt, src.gpt, "--yes", check=False), 5, "is the source of this job"
    )
    assert file_digest(src.gpt_file) == before


def test_clone_onto_other_sector_size_is_refused(src: Source, tmp_path: Path) -> None:
    path = sparse_file(tmp_path, "t4k.img", 2 * GPT_DISK_SIZE)
    dst = src.loops.attach(path, sector_size=4096)
    before = file_digest(path)
    refused(appliance("clone", src.gpt, dst, "--yes", check=False), 5, "4096-byte sectors")
    assert file_digest(path) == before


@pytest.mark.parametrize("job", ["restore", "clone"])
def test_two_partitions_shrink_when_one_is_not_enough(
    src: Source, tmp_path: Path, job: str
) -> None:
    """300 MiB for 447 MiB of partitions: the NTFS cannot give enough alone, so the ext4
    (the largest other) shrinks too, each no smaller than its filesystem allows."""
    dst, _ = target(src, tmp_path, 300 * MiB)
    if job == "clone":
        clone(src, src.gpt, dst)
    else:
        appliance("restore", "--repo", str(src.repo), "--image", "gpt", dst, "--yes")
    assert_equivalent(src.gpt, dst, same_size=False, resized={2, 3}, moved={3, 4})
    check_resized(src.gpt, dst, 512, {2: "ext4", 3: "ntfs"})
    src_parts, dst_parts = partition_nodes(src.gpt), partition_nodes(dst)
    for number, fstype in ((2, "ext4"), (3, "ntfs")):
        assert fs_size(dst_parts[number], fstype) < fs_size(src_parts[number], fstype)
    src.loops.detach(dst)

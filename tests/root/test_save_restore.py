"""Save, verify and restore real disks, then prove the restored disk equals the source.

Each source disk (GPT with FAT32/ext4/NTFS/swap, MBR with an extended partition holding xfs
and btrfs, a 4096-byte-sector disk) is built once per module and saved once through the
real command line; each test restores it onto a blank disk of the same size or larger and
compares the two disks with independent tools (tests/diskcompare.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit.cli import appliance, file_digest, image_chunks, result_json
from kit.diskbuild import (
    DISK_4K_SIZE,
    GPT_DISK_SIZE,
    MBR_DISK_SIZE,
    MiB,
    build_4k_disk,
    build_gpt_disk,
    build_mbr_disk,
    sparse_file,
)
from kit.diskcompare import assert_equivalent, partition_nodes, table
from kit.fsinfo import fs_size
from kit.loops import Loops

pytestmark = pytest.mark.root

BUILDERS = {
    "gpt": (build_gpt_disk, GPT_DISK_SIZE, 512),
    "mbr": (build_mbr_disk, MBR_DISK_SIZE, 512),
    "4k": (build_4k_disk, DISK_4K_SIZE, 4096),
}


@dataclass
class Saved:
    kind: str
    source: str
    source_file: Path
    repo: Path
    image: str
    size: int
    sector: int
    loops: Loops
    folder: Path


@pytest.fixture(scope="module")
def module_loops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loops]:
    loops = Loops(tmp_path_factory.mktemp("loops"))
    try:
        yield loops
    finally:
        loops.cleanup()


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def saved(
    request: pytest.FixtureRequest, module_loops: Loops, tmp_path_factory: pytest.TempPathFactory
) -> Saved:
    kind = request.param
    build, size, sector = BUILDERS[kind]
    folder = tmp_path_factory.mktemp(f"disk-{kind}")
    source_file = folder / "source.img"
    source = build(module_loops, source_file)
    repo = folder / "repo"
    before = file_digest(source_file)
    proc = appliance(
        "save",
        source,
        "--repo",
        str(repo),
        "--image",
        f"{kind}-1",
        "--json",
        "--create",
        "--progress",
        "json",
    )
    assert file_digest(source_file) == before, "save wrote to its source"
    stats = result_json(proc)
    assert stats["new_chunks"] > 0 and stats["used_bytes"] > 0
    # progress came as JSON lines with the documented keys
    events = [json.loads(line) for line in proc.stdout.splitlines() if '"type": "progress"' in line]
    assert events and {"phase", "done", "total", "rate", "eta"} <= set(events[-1])
    assert events[-1]["done"] == events[-1]["total"] == stats["used_bytes"]
    return Saved(kind, source, source_file, repo, f"{kind}-1", size, sector, module_loops, folder)


def blank_target(saved: Saved, name: str, size: int) -> str:
    path = sparse_file(saved.folder, name, size)
    return saved.loops.attach(path, sector_size=saved.sector)


def test_verify(saved: Saved) -> None:
    proc = appliance("verify", "--repo", str(saved.repo), "--image", saved.image, "--json")
    out = result_json(proc)
    assert out["ok"] and out["chunks"] > 0
    appliance(
        "verify", "--repo", str(saved.repo), "--image", saved.image, "--against", saved.source
    )


def test_images_lists_the_image(saved: Saved) -> None:
    out = result_json(appliance("images", "--repo", str(saved.repo), "--json"))
    [image] = [i for i in out["images"] if i["name"] == saved.image]
    assert image["complete"] and image["restorable"]
    assert image["disk"]["size"] == saved.size
    assert image["disk"]["logical_sector"] == saved.sector
    assert 0 < image["stored_bytes"] <= image["used_bytes"] < saved.size


# On a larger target the last data partition that is not of a fixed-size kind grows, with
# its filesystem; partitions after it (swap) move to the end.
GROWN = {"gpt": ({3: "ntfs"}, {4}), "mbr": ({6: "btrfs", 2: ""}, set()), "4k": ({2: "xfs"}, set())}


@pytest.mark.parametrize("grow", [1.0, 1.5], ids=["same-size", "larger"])
def test_restore(saved: Saved, grow: float) -> None:
    size = int(saved.size * grow) // (1 << 20) * (1 << 20)
    target = blank_target(saved, f"target-{grow}.img", size)
    proc = appliance("restore", "--repo", str(saved.repo), "--image", saved.image, target, "--yes")
    assert "every chunk was checked" in proc.stdout
    if grow == 1.0:
        assert_equivalent(saved.source, target, same_size=True)
    else:
        resized, moved = GROWN[saved.kind]
        assert_equivalent(saved.source, target, same_size=False, resized=set(resized), moved=moved)
        src_parts, dst_parts = partition_nodes(saved.source), partition_nodes(target)
        layout = table(target, ignore_size=True)["partitions"]
        last_end = max(p["start"] + p["size"] for p in layout.values()) * saved.sector
        assert size - last_end < 2 * MiB, "the disk was not filled"
        for number, fstype in resized.items():
            if fstype:
                before = fs_size(src_parts[number], fstype)
                after = fs_size(dst_parts[number], fstype)
                part_size = layout[number]["size"] * saved.sector
                assert after > before and after > 0.97 * part_size, (number, before, after)
    appliance("verify", "--repo", str(saved.repo), "--image", saved.image, "--against", target)
    saved.loops.detach(target)


def test_restore_over_an_old_disk(saved: Saved) -> None:
    """A target that held other data: stale signatures must not survive the restore."""
    if saved.kind != "mbr":
        pytest.skip("one kind is enough")
    old_file = saved.folder / "old.img"
    gpt_build, _, _ = BUILDERS["gpt"]
    target = gpt_build(saved.loops, sparse_file(saved.folder, old_file.name, saved.size), seed=7)
    appliance("restore", "--repo", str(saved.repo), "--image", saved.image, target, "--yes")
    assert_equivalent(saved.source, target, same_size=True)
    saved.loops.detach(target)


def test_one_worker_saves_the_same_image_and_restores_it(saved: Saved) -> None:
    """`--workers 1` (the engine's scaling figure on one core): the same chunks as the save
    on every core, and a restore on one decoder that equals the source."""
    repo = saved.folder / "repo-one-worker"
    appliance(
        "save", saved.source, "--repo", str(repo), "--image", "one", "--create", "--workers", "1"
    )
    assert image_chunks(repo, "one") == image_chunks(saved.repo, saved.image)
    target = blank_target(saved, "target-one-worker.img", saved.size)
    appliance("restore", "--repo", str(repo), "--image", "one", target, "--yes", "--workers", "1")
    assert_equivalent(saved.source, target, same_size=True)

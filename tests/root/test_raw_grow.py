"""Partitions copied whole grow with their partition on a larger target, like the others.

A dirty NTFS (its $Volume dirty flag set as Windows leaves it) is saved whole ("raw"); an
ext4 whose journal needs recovery is saved too. Restored onto a larger disk, the grown
partition's filesystem fills it (its own tools say so), NTFS's backup boot sector sits at
the new end of the partition, and the ext4's journal was replayed on the target's copy.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit.cli import appliance
from kit.diskbuild import sparse_file
from kit.diskcompare import fsck_part, ntfs_backup_boot_sector, partition_nodes, read_bytes, table
from kit.fsinfo import fs_size
from kit.loops import Loops
from kit.ntfs import set_dirty

pytestmark = pytest.mark.root
MiB = 1024 * 1024
NTFS_TYPE = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"


def sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=True)


@dataclass
class Saved:
    loops: Loops
    node: str
    repo: Path


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Saved]:
    folder = tmp_path_factory.mktemp("rawgrow")
    loops = Loops(folder)
    try:
        node = loops.attach(sparse_file(folder, "src.img", 200 * MiB))
        subprocess.run(
            ["sfdisk", "--quiet", node],
            check=True,
            text=True,
            capture_output=True,
            input=f"label: gpt\nsize=60MiB\nsize=100MiB, type={NTFS_TYPE}\n",
        )
        parts = partition_nodes(node)
        sh("mkfs.ext4", "-q", "-L", "unclean", parts[1])
        sh("debugfs", "-w", "-R", "feature needs_recovery", parts[1])
        sh("mkfs.ntfs", "-q", "-Q", "-F", "-L", "dirty", parts[2])
        set_dirty(parts[2])
        repo = folder / "repo"
        proc = appliance(
            "save", "--create", node, "--repo", str(repo), "--image", "raw", check=False
        )
        assert proc.returncode == 20, proc.stderr  # done, with warnings: copied whole
        assert "copied whole" in proc.stderr
        yield Saved(loops, node, repo)
    finally:
        loops.cleanup()


def methods(repo: Path) -> dict[str, str]:
    manifest = json.loads((repo / "images" / "raw" / "manifest.json").read_text())
    return {r["name"]: r["method"] for r in manifest["regions"]}


@pytest.mark.parametrize(
    "grow, number, fstype",
    [(None, 2, "ntfs"), ("1", 1, "ext4")],
    ids=["dirty-ntfs", "unclean-ext4"],
)
def test_whole_copied_partition_grows(
    saved: Saved, tmp_path: Path, grow: str | None, number: int, fstype: str
) -> None:
    if fstype == "ntfs":
        assert methods(saved.repo)["p2"] == "raw"
    target = saved.loops.attach(sparse_file(tmp_path, "target.img", 320 * MiB))
    extra = ["--grow", grow] if grow else []
    appliance("restore", "--repo", str(saved.repo), "--image", "raw", target, "--yes", *extra)
    src_parts, dst_parts = partition_nodes(saved.node), partition_nodes(target)
    part_size = table(target, ignore_size=True)["partitions"][number]["size"] * 512
    before, after = fs_size(src_parts[number], fstype), fs_size(dst_parts[number], fstype)
    assert after > before and after > 0.97 * part_size, (before, after, part_size)
    if fstype == "ntfs":
        backup = ntfs_backup_boot_sector(dst_parts[number])
        assert backup[3:11] == b"NTFS    " and backup[510:] == b"\x55\xaa"
        assert backup == read_bytes(dst_parts[number], 0, 512)
        subprocess.run(["ntfsfix", "-n", dst_parts[number]], check=True, capture_output=True)
    else:
        fsck_part(dst_parts[number], "ext4")  # the journal was replayed on the target's copy
    saved.loops.detach(target)

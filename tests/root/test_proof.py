"""Every image proven before it is called complete (issue 9, section 2).

A save checks each partition saved through a used-block map on the image itself, with the
filesystem's own checker, read-only; a wrong map is caught at save time and that partition
is saved again whole; `--no-check` records that nothing was proven.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kit.cli import appliance, result_json
from kit.diskbuild import build_gpt_disk, build_mbr_disk, sparse_file, write_raw
from kit.diskcompare import assert_equivalent, device_size, partition_nodes, read_bytes
from kit.loops import Loops

from appliance.fs import usedmap
from appliance.jobs import save as save_job

pytestmark = pytest.mark.root

TOOLS = {
    "vfat": "fsck.fat -n",
    "ext4": "e2fsck -fn",
    "ntfs": "ntfsfix -n",
    "xfs": "xfs_repair -n",
    "btrfs": "btrfs check --readonly",
}


def manifest_of(repo: Path, image: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((repo / "images" / image / "manifest.json").read_text())
    return data


def images_json(repo: Path) -> dict[str, dict[str, Any]]:
    out = result_json(appliance("images", "--repo", str(repo), "--json"))
    return {image["name"]: image for image in out["images"]}


@pytest.mark.parametrize("build", [build_gpt_disk, build_mbr_disk], ids=["gpt", "mbr"])
def test_a_save_proves_every_mapped_partition(build: Any, loops: Loops, tmp_path: Path) -> None:
    source = build(loops, tmp_path / "source.img")
    repo = tmp_path / "repo"
    proc = appliance("save", "--create", source, "--repo", str(repo), "--image", "one", "--json")
    assert "warning" not in proc.stderr.lower(), proc.stderr
    regions = manifest_of(repo, "one")["regions"]
    mapped = [r for r in regions if r["method"] == "partclone"]
    assert {r["fstype"] for r in mapped} == (
        {"vfat", "ext4", "ntfs"} if build is build_gpt_disk else {"ext4", "xfs", "btrfs"}
    )
    for region in regions:
        if region["method"] != "partclone":
            assert region["proof"] is None, region
            continue
        proof = region["proof"]
        assert proof["result"] == "passed", region
        assert proof["tool"] == TOOLS[region["fstype"]]
        assert proof["seconds"] > 0
    assert result_json(proc)["proofs"] == {r["name"]: r["proof"] for r in mapped}
    listed = images_json(repo)["one"]
    assert listed["proof"] == "proven"
    assert listed["proofs"] == {r["name"]: r["proof"] for r in mapped}
    [row] = [
        line
        for line in appliance("images", "--repo", str(repo)).stdout.splitlines()
        if line.startswith("one ")
    ]
    assert row.endswith("  proven"), row


def test_no_check_records_skipped(loops: Loops, tmp_path: Path) -> None:
    source = build_gpt_disk(loops, tmp_path / "source.img")
    repo = tmp_path / "repo"
    appliance("save", "--create", source, "--repo", str(repo), "--image", "quick", "--no-check")
    for region in manifest_of(repo, "quick")["regions"]:
        if region["method"] == "partclone":
            assert region["proof"]["result"] == "skipped"
            assert "--no-check" in region["proof"]["detail"]
    assert images_json(repo)["quick"]["proof"] == "unproven"
    [row] = [
        line
        for line in appliance("images", "--repo", str(repo)).stdout.splitlines()
        if line.startswith("quick ")
    ]
    assert row.endswith("  unproven"), row


def dumpe2fs(*args: str) -> str:
    return subprocess.run(["dumpe2fs", *args], capture_output=True, text=True, check=True).stdout


def block_size(part: str) -> int:
    return int(
        next(
            line.split(":")[1]
            for line in dumpe2fs("-h", part).splitlines()
            if line.startswith("Block size:")
        )
    )


def inode_table_of_group0(part: str) -> tuple[int, int]:
    """(offset, length) in bytes of the first block group's inode table (holds the root)."""
    text = dumpe2fs(part)
    block = block_size(part)
    group0 = text.split("Group 0:")[1].split("Group 1:")[0]
    span = group0.split("Inode table at ")[1].split()[0]
    first, last = (int(n) for n in span.split("-"))
    return first * block, (last - first + 1) * block


def without(
    ranges: tuple[tuple[int, int], ...], hole: tuple[int, int]
) -> tuple[tuple[int, int], ...]:
    cut_start, cut_end = hole[0], hole[0] + hole[1]
    out: list[tuple[int, int]] = []
    for start, length in ranges:
        end = start + length
        if start < cut_start:
            out.append((start, min(end, cut_start) - start))
        if end > cut_end:
            out.append((max(start, cut_end), end - max(start, cut_end)))
    return tuple(out)


def test_a_wrong_map_is_caught_and_the_partition_saved_whole(
    loops: Loops, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = build_gpt_disk(loops, tmp_path / "source.img")
    ext4 = partition_nodes(source)[2]
    hole = inode_table_of_group0(ext4)
    assert any(read_bytes(ext4, hole[0], hole[1])), "the dropped range holds no metadata"
    real = usedmap.used_map

    def wrong_map(
        node: str, fstype: str | None, size: int, align: int = 512, force: bool = False
    ) -> usedmap.UsedMap:
        umap = real(node, fstype, size, align, force=force)
        if node != ext4:
            return umap
        return usedmap.UsedMap(umap.size, without(umap.ranges, hole), umap.method)

    monkeypatch.setattr(save_job, "used_map", wrong_map)
    repo = tmp_path / "repo"
    manifest = save_job.save(source, str(repo), "caught", create=True)
    assert manifest.complete
    region = manifest.region("p2")
    assert region.proof is not None and region.proof["result"] == "failed"
    assert region.proof["source"] == "passed"
    assert region.method == "raw" and region.used_bytes == region.size
    assert region.note and "used-block map was wrong" in region.note
    others = [r for r in manifest.regions if r.name != "p2" and r.method == "partclone"]
    assert others and all(r.proof and r.proof["result"] == "passed" for r in others)
    log = (repo / "images" / "caught" / "log.txt").read_text()
    assert "again whole" in log and "e2fsck -fn on the image: failed" in log

    target = loops.attach(sparse_file(tmp_path, "target.img", device_size(source)))
    appliance("restore", "--repo", str(repo), "--image", "caught", target, "--yes")
    assert_equivalent(source, target, same_size=True)  # e2fsck clean, the same files


def test_a_damaged_source_is_saved_whole_and_said_so(loops: Loops, tmp_path: Path) -> None:
    """partclone maps it (its bitmaps are fine), but its root directory block is gone."""
    source = build_gpt_disk(loops, tmp_path / "source.img")
    ext4 = partition_nodes(source)[2]
    block = int(
        subprocess.run(
            ["debugfs", "-R", "bmap / 0", ext4], capture_output=True, text=True, check=True
        ).stdout.split()[-1]
    )
    size = block_size(ext4)
    write_raw(ext4, block * size, bytes(size))
    repo = tmp_path / "repo"
    proc = appliance(
        "save", "--create", source, "--repo", str(repo), "--image", "damaged", check=False
    )
    assert proc.returncode == 20, proc.stderr  # done, with warnings
    [warning] = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert "partition 2" in warning and "source too" in warning
    region = next(r for r in manifest_of(repo, "damaged")["regions"] if r["name"] == "p2")
    assert region["proof"]["result"] == "failed" and region["proof"]["source"] == "failed"
    assert region["method"] == "raw" and "source filesystem has errors" in region["note"]
    assert images_json(repo)["damaged"]["proof"] == "fs errors"


def mounts_under(folder: Path) -> list[str]:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [point for point in points if point.startswith(f"{folder}/")]


def test_a_killed_save_leaves_no_view_behind(loops: Loops, tmp_path: Path) -> None:
    """The proof's view process unmounts itself and removes its files when its save dies."""
    source = build_gpt_disk(loops, tmp_path / "source.img")
    views = tmp_path / "views"
    views.mkdir()
    argv = [
        sys.executable,
        "-m",
        "appliance.cli",
        "save",
        "--create",
        source,
        "--repo",
        str(tmp_path / "repo"),
        "--image",
        "killed",
        "--level",
        "19",
        "--progress",
        "none",
    ]
    proc = subprocess.Popen(
        argv,
        env={**os.environ, "APPLIANCE_TMP": str(views)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not mounts_under(views):
            assert proc.poll() is None, "the save ended before its view was mounted"
            assert time.monotonic() < deadline, "no view was mounted"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 20
        while (mounts_under(views) or list(views.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not mounts_under(views)
        assert not list(views.iterdir())
    finally:
        if proc.poll() is None:
            proc.kill()
        for point in mounts_under(views):
            subprocess.run(["umount", point], check=False)

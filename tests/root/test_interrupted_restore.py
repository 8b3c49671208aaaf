"""A restore or clone that stops halfway leaves no valid partition table and a marker.

Real restores of a real GPT disk (tests/kit/diskbuild.py) are killed with SIGKILL at random
moments, onto a target of the same size (table bytes from the image) and a larger one
(table from sfdisk on a scratch file): no killed target may hold a valid partition table
(`sfdisk --json`, `blkid -p`), `appliance disks --all --json` must report each one as an
incomplete restore of the image, and a new restore must finish it (fsck, file trees equal).
A damaged chunk found late leaves the marker and says so; clone is killed the same way.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit.cli import appliance, file_digest, refused
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
from kit.diskcompare import assert_equivalent, file_tree, fsck_part, mounted
from kit.interrupt import first_write, has_valid_table, kill_after, marked, reported, start
from kit.loops import Loops

pytestmark = pytest.mark.root

STOP = "no valid partition table; run the restore again to finish it"


@dataclass
class Source:
    loops: Loops
    folder: Path
    node: str
    repo: Path


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    folder = tmp_path_factory.mktemp("interrupted")
    loops = Loops(folder)
    try:
        node = build_gpt_disk(loops, folder / "gpt.img")
        repo = folder / "repo"
        appliance("save", "--create", node, "--repo", str(repo), "--image", "gpt")
        yield Source(loops, folder, node, repo)
    finally:
        loops.cleanup()


def restore_args(src: Source, target: str, repo: Path | None = None) -> list[str]:
    return ["restore", "--repo", str(repo or src.repo), "--image", "gpt", target, "--yes"]


@pytest.mark.slow
def test_sigkill_at_random_points_of_a_restore(src: Source, tmp_path: Path) -> None:
    same = src.loops.attach(sparse_file(tmp_path, "same.img", GPT_DISK_SIZE))
    larger = src.loops.attach(sparse_file(tmp_path, "larger.img", GPT_DISK_SIZE * 3 // 2))
    proc = start(*restore_args(src, same))  # how long the writing takes here
    began = time.monotonic() + first_write(proc, same)
    assert proc.wait() == 0
    duration = time.monotonic() - began
    rng = random.Random(9)
    interrupted = 0
    for attempt in range(20):
        target = (same, larger)[attempt % 2]
        delay = rng.uniform(0.01, duration)  # a small disk: its writing takes well under 1 s
        if not kill_after(start(*restore_args(src, target)), target, delay):
            continue
        state = reported(target)
        if state is None:  # killed after its last write (the table): a finished disk
            assert has_valid_table(target), (attempt, delay)
            continue
        interrupted += 1
        assert not has_valid_table(target), (attempt, delay)
        assert state.startswith("incomplete restore of gpt, started "), state
    assert interrupted >= 15, f"only {interrupted} of 20 kills hit a restore while it wrote"
    for target, same_size in ((same, True), (larger, False)):
        if reported(target) is not None:
            appliance(*restore_args(src, target))
        assert reported(target) is None and has_valid_table(target)
        if same_size:
            assert_equivalent(src.node, target, same_size=True)
        else:
            assert_equivalent(src.node, target, same_size=False, resized={3}, moved={4})
    src.loops.detach(same)
    src.loops.detach(larger)


def test_sigkill_during_a_clone(src: Source, tmp_path: Path) -> None:
    target = src.loops.attach(sparse_file(tmp_path, "clone.img", GPT_DISK_SIZE * 3 // 2))
    rng = random.Random(3)
    interrupted = 0
    for delay in (0.0, rng.uniform(0.05, 0.3), rng.uniform(0.3, 0.6)):
        if kill_after(start("clone", src.node, target, "--yes"), target, delay):
            state = reported(target)
            # either still marked and without a table, or killed after its last write
            assert (state is None) == has_valid_table(target), (delay, state)
            assert state is None or state.startswith(f"incomplete clone of {src.node}")
            interrupted += state is not None
    assert interrupted, "no kill hit the clone while it wrote"
    appliance("clone", src.node, target, "--yes")
    assert reported(target) is None
    assert_equivalent(src.node, target, same_size=False, resized={3}, moved={4})
    src.loops.detach(target)


def _last_partition_chunk(repo: Path) -> Path:
    import zstandard

    index = repo / "images" / "gpt" / "p3.idx"
    data = json.loads(zstandard.ZstdDecompressor().decompress(index.read_bytes()))
    name = [c for c in data["chunks"] if c][-1]
    [path] = [p for p in (repo / "chunks").glob(f"*/*/{name}*")]
    return path


def test_damaged_chunk_found_late_leaves_the_marker(src: Source, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(src.repo, repo)
    chunk = _last_partition_chunk(repo)
    blob = bytearray(chunk.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    chunk.chmod(0o644)
    chunk.write_bytes(bytes(blob))
    target = src.loops.attach(sparse_file(tmp_path, "target.img", GPT_DISK_SIZE))
    proc = appliance(*restore_args(src, target, repo), check=False)
    sentence = refused(proc, 9, STOP)
    assert f"{target} holds an incomplete restore of gpt" in sentence
    assert not has_valid_table(target)
    assert reported(target) is not None
    text = " ".join(appliance("disks", "--all").stdout.split())  # lines wrap at 80 columns
    assert "incomplete restore of gpt, started " in text and "no valid partition table" in text
    # the good repository finishes it
    appliance(*restore_args(src, target))
    assert_equivalent(src.node, target, same_size=True)
    src.loops.detach(target)


def test_dry_run_lists_the_steps(src: Source, tmp_path: Path) -> None:
    path = sparse_file(tmp_path, "target.img", GPT_DISK_SIZE + 64 * MiB)
    target = src.loops.attach(path)
    before = file_digest(path)
    text = appliance(
        "restore", "--repo", str(src.repo), "--image", "gpt", target, "--dry-run"
    ).stdout
    assert "filesystem grows" in " ".join(text.split())  # the fit lines stay (wrapped)
    steps = text.split("Steps:\n", 1)[1].splitlines()
    assert steps[0].startswith("1. mark the target as an incomplete restore")
    assert "make the table valid" in steps[-2]
    assert all(len(line) <= 80 for line in steps), steps
    out = json.loads(
        appliance(
            "restore", "--repo", str(src.repo), "--image", "gpt", target, "--dry-run", "--json"
        ).stdout.splitlines()[-1]
    )
    assert out["fit"]["resize"] == 3 and out["steps"][0]["step"] == "MarkIncomplete"
    assert [s["text"] for s in out["steps"]] == [line.split(". ", 1)[1] for line in steps]
    assert all(len(s["text"]) < 78 for s in out["steps"])
    clone_text = appliance("clone", src.node, target, "--dry-run").stdout
    assert "1. mark the target as an incomplete clone" in clone_text
    assert file_digest(path) == before
    src.loops.detach(target)


@pytest.mark.parametrize("kind", ["mbr", "4k"])
def test_killed_restore_of_mbr_and_4k_disks(kind: str, tmp_path: Path) -> None:
    """An MBR with an extended partition (EBRs) and a 4096-byte-sector GPT: killed in the
    middle, no table is left, and the same restore onto a larger disk finishes it."""
    build, size, sector = {
        "mbr": (build_mbr_disk, MBR_DISK_SIZE, 512),
        "4k": (build_4k_disk, DISK_4K_SIZE, 4096),
    }[kind]
    loops = Loops(tmp_path)
    try:
        node = build(loops, tmp_path / "src.img")
        repo = tmp_path / "repo"
        appliance("save", "--create", node, "--repo", str(repo), "--image", kind)
        target = loops.attach(sparse_file(tmp_path, "t.img", size * 3 // 2), sector)
        args = ["restore", "--repo", str(repo), "--image", kind, target, "--yes"]
        assert kill_after(start(*args), target, 0.02)  # while it writes, before the grow
        state = reported(target)
        assert state is not None and state.startswith(f"incomplete restore of {kind}")
        assert not has_valid_table(target)
        appliance(*args)
        assert reported(target) is None
        resized = {"mbr": {6, 2}, "4k": {2}}[kind]
        assert_equivalent(node, target, same_size=False, resized=resized)
    finally:
        loops.cleanup()


def test_whole_disk_filesystem_is_hidden_until_the_end(loops: Loops, tmp_path: Path) -> None:
    """No table: the first MiB (the ext4 superblock) is written last, so a killed restore
    leaves no filesystem for blkid to find."""
    node = loops.attach(sparse_file(tmp_path, "whole.img", 64 * MiB))
    subprocess.run(["mkfs.ext4", "-q", "-L", "whole", node], check=True)
    with mounted(node, "ext4", readonly=False) as where:
        for number in range(50):
            (Path(where) / f"f{number}").write_bytes(os.urandom(64 * 1024))
    repo = tmp_path / "repo"
    appliance("save", "--create", node, "--repo", str(repo), "--image", "whole")
    target = loops.attach(sparse_file(tmp_path, "t.img", 64 * MiB))
    args = ["restore", "--repo", str(repo), "--image", "whole", target, "--yes"]
    appliance(*args)  # the target holds the filesystem: a killed restore must hide it
    for delay in (0.0, 0.15):
        if not kill_after(start(*args), target, delay):
            continue
        probe = subprocess.run(
            ["blkid", "-p", "-o", "export", target], capture_output=True, text=True
        )
        assert "TYPE=" not in probe.stdout, (delay, probe.stdout)
        assert (reported(target) or "").startswith("incomplete restore of whole")
    appliance(*args)
    assert reported(target) is None
    fsck_part(target, "ext4")
    assert file_tree(target, "ext4") == file_tree(node, "ext4")


def test_sigterm_says_what_the_target_holds(src: Source, tmp_path: Path) -> None:
    target = src.loops.attach(sparse_file(tmp_path, "t.img", GPT_DISK_SIZE))
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", *restore_args(src, target)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    while not marked(target) and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the restore finished before the signal arrived")
    assert proc.returncode == 130, err
    [line] = [text for text in err.splitlines() if text.strip()]
    assert line.startswith("appliance: Stopped by the user.") and STOP in line, line
    assert not has_valid_table(target) and reported(target) is not None
    src.loops.detach(target)

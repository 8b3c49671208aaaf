"""`appliance restore --repo R --image I T1 T2 T3`: one image of a real GPT disk (FAT32, ext4,
NTFS, swap) restored onto three loop disks at once, one of them larger (its own fitted
layout), each compared with the source by independent tools; a target that dies mid-write
is dropped with its sentence and keeps its marker while the others finish; the same disk
named twice (or under two names) is refused before anything is written."""

from __future__ import annotations

import json
import mmap
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.cli import appliance, refused, result_json
from kit.diskbuild import GPT_DISK_SIZE, MiB, sparse_file
from kit.diskcompare import assert_equivalent, read_bytes
from kit.interrupt import first_write, has_valid_table, marked, reported, start
from kit.loops import Loops
from kit.saved import Saved, saved_gpt_disk

pytestmark = pytest.mark.root

OLD_HEAD = b"\xee" * 4096  # what a target held before: must be gone, or still there


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Saved]:
    with saved_gpt_disk(tmp_path_factory.mktemp("many")) as saved:
        yield saved


def target(loops: Loops, directory: Path, name: str, size: int = GPT_DISK_SIZE) -> str:
    path = sparse_file(directory, name, size)
    with open(path, "r+b") as handle:
        handle.write(OLD_HEAD)
    return loops.attach(path)


def restore(saved: Saved, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return appliance("restore", "--repo", str(saved.repo), "--image", "base", *args, check=check)


def test_one_image_onto_three_disks(saved: Saved, loops: Loops, tmp_path: Path) -> None:
    same = [target(loops, tmp_path, f"t{n}.img") for n in range(2)]
    larger = target(loops, tmp_path, "larger.img", GPT_DISK_SIZE * 3 // 2)
    nodes = [same[0], larger, same[1]]
    proc = restore(saved, *nodes, "--yes", "--progress=json")
    out = result_json(proc)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    told = [(e["target"], e["state"]) for e in events if e["type"] == "target"]
    assert sorted(told) == sorted((node, "restored") for node in nodes)
    assert any(e["type"] == "progress" and nodes[1] in e["message"] for e in events)
    assert out["ok"] is True
    assert [v["target"] for v in out["verdicts"]] == nodes
    assert all(v["state"] == "restored" and v["error"] is None for v in out["verdicts"])
    fits = {t["target"]: t["same_size"] for t in out["targets"]}
    assert fits == {same[0]: True, larger: False, same[1]: True}
    for node in same:
        assert_equivalent(saved.source, node, same_size=True)
    assert_equivalent(saved.source, larger, same_size=False, resized={3}, moved={4})
    for node in nodes:
        assert not marked(node) and reported(node) is None
    log = next(saved.repo.rglob("log.txt")).read_text()
    assert all(f"at {node} (one of 3)" in log for node in nodes), log


def test_a_target_that_dies_is_dropped_and_stays_marked(
    saved: Saved, loops: Loops, tmp_path: Path
) -> None:
    """The middle target's loop file lives on an 8 MiB tmpfs: past that every write fails;
    it is named with its cause and keeps its marker, the other two finish and compare equal."""
    small = tmp_path / "small-tmpfs"  # not below loops.mount_root: detach would unmount it
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    try:
        dying = loops.attach(sparse_file(small, "dying.img", GPT_DISK_SIZE))
        good = [target(loops, tmp_path, f"good{n}.img") for n in range(2)]
        proc = restore(saved, good[0], dying, good[1], "--yes", "--progress=none", check=False)
        sentence = refused(proc, 4, f"Restoring failed on {dying}")
        assert "2 of 3 targets hold the image" in sentence
        assert all(node not in sentence for node in good)
        assert "onto 2 of 3 disks" in proc.stdout
        [line] = [line for line in proc.stdout.splitlines() if line.startswith(f"{dying}:")]
        assert line.startswith(f"{dying}: FAILED: The disk {dying}"), proc.stdout
        assert "incomplete restore of base" in proc.stdout
        for node in good:
            assert f"{node}: restored and proven" in proc.stdout
            assert_equivalent(saved.source, node, same_size=True)
        assert marked(dying) and not has_valid_table(dying)
        state = reported(dying)
        assert state is not None and state.startswith("incomplete restore of base"), state
        loops.detach(dying)
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_the_same_disk_twice_is_refused_before_any_write(
    saved: Saved, loops: Loops, tmp_path: Path
) -> None:
    first, second = (target(loops, tmp_path, f"t{n}.img") for n in range(2))
    proc = restore(saved, first, second, first, "--yes", check=False)
    refused(proc, 5, f"The target {first} is named twice")
    # the same disk under two names: /dev/loopN and its kernel name
    proc = restore(saved, first, second, os.path.basename(second), "--yes", check=False)
    refused(proc, 5, f"The target {second} is named twice")
    for node in (first, second):
        assert read_bytes(node, 0, len(OLD_HEAD)) == OLD_HEAD


def test_plan_lists_every_target_and_asks_for_all(
    saved: Saved, loops: Loops, tmp_path: Path
) -> None:
    nodes = [target(loops, tmp_path, f"t{n}.img", 600 * MiB) for n in range(2)]
    proc = restore(saved, *nodes, "--dry-run")
    for node in nodes:
        assert f"at {node}\nwill be ERASED" in proc.stdout
    assert "Steps on every target:" in proc.stdout and "read once" in proc.stdout
    plan = result_json(restore(saved, *nodes, "--dry-run", "--json"))
    assert [t["target"] for t in plan["targets"]] == nodes
    assert all(t["steps"][0]["step"] == "MarkIncomplete" for t in plan["targets"])
    names = " ".join(os.path.basename(node) for node in nodes)
    refused(restore(saved, *nodes, check=False), 5, f"erases {names}; add --yes")
    for node in nodes:
        assert read_bytes(node, 0, len(OLD_HEAD)) == OLD_HEAD


def test_each_chunk_is_read_once_for_all_targets(
    saved: Saved, loops: Loops, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the process: every read of a chunk from the repository is counted (whole, or into
    a restore's pooled buffer); three targets cost exactly the reads one target costs."""
    from appliance.jobs.multirestore import plan_restores, restore_many
    from appliance.jobs.restore import restore
    from appliance.repo.repository import Repository

    fetched: list[str] = []
    whole, into = Repository.fetch_chunk, Repository.fetch_chunk_into

    def counting(self: Repository, name: str) -> bytes:
        fetched.append(name)
        return whole(self, name)

    def counting_into(self: Repository, name: str, buffer: mmap.mmap) -> int:
        fetched.append(name)
        return into(self, name, buffer)

    monkeypatch.setattr(Repository, "fetch_chunk", counting)
    monkeypatch.setattr(Repository, "fetch_chunk_into", counting_into)
    [one] = plan_restores(str(saved.repo), "base", [target(loops, tmp_path, "one.img")])
    restore(one)
    alone = sorted(fetched)
    fetched.clear()
    nodes = [target(loops, tmp_path, f"t{n}.img") for n in range(3)]
    result = restore_many(plan_restores(str(saved.repo), "base", nodes))
    assert result.stop is None and [v.state for v in result.verdicts] == ["restored"] * 3
    assert len(alone) > 3 and sorted(fetched) == alone
    for node in nodes:
        assert not marked(node) and has_valid_table(node)


def test_targets_of_other_sizes_get_their_own_fit(
    saved: Saved, loops: Loops, tmp_path: Path
) -> None:
    """A smaller target (its NTFS shrinks on a copy-on-write view of the image, so that
    partition is not read with the others) next to one of the same size."""
    smaller = target(loops, tmp_path, "smaller.img", 400 * MiB)  # the partitions end at 447 MiB
    same = target(loops, tmp_path, "same.img")
    out = result_json(restore(saved, smaller, same, "--yes", "--json"))
    assert out["ok"] and [t["same_size"] for t in out["targets"]] == [False, True]
    assert_equivalent(saved.source, same, same_size=True)
    assert_equivalent(saved.source, smaller, same_size=False, resized={3}, moved={4})


def test_a_damaged_chunk_stops_every_target_marked(
    saved: Saved, loops: Loops, tmp_path: Path
) -> None:
    """A chunk of the ext4 partition with one byte changed (its length kept, so the check
    before the first write passes): found as it is read, it stops every target, each left
    marked incomplete and named."""
    from appliance.repo.image import load_image
    from appliance.repo.repository import Repository

    repo = tmp_path / "repo"
    shutil.copytree(saved.repo, repo)
    loaded = load_image(Repository.open(str(repo)), "base")
    [ext4] = [r for r in loaded.manifest.regions if r.fstype == "ext4"]
    name = next(c for c in loaded.indexes[ext4.name].chunks if c is not None)
    [path] = [p for p in (repo / "chunks").rglob(name) if p.is_file()]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    nodes = [target(loops, tmp_path, f"t{n}.img") for n in range(2)]
    proc = appliance(
        "restore", "--repo", str(repo), "--image", "base", *nodes, "--yes", check=False
    )
    sentence = refused(proc, 9, "each hold an incomplete restore of base")
    assert all(node in sentence for node in nodes) and ext4.describe() in sentence
    for node in nodes:
        assert f"{node}: STOPPED:" in proc.stdout
        assert marked(node) and not has_valid_table(node)


def test_a_stop_leaves_no_target_looking_good(saved: Saved, loops: Loops, tmp_path: Path) -> None:
    """SIGTERM (what the interface's Stop and a shutdown send) at moments after the first
    write: the job exits 130 and each target holds the finished image, or the marker and no
    valid table, or (stopped before its turn) what it held before; never something else."""
    stopped = 0
    for attempt, delay in enumerate((0.0, 0.05, 0.2, 0.5)):
        nodes = [target(loops, tmp_path, f"a{attempt}-{n}.img") for n in range(3)]
        args = ["restore", "--repo", str(saved.repo), "--image", "base", *nodes, "--yes"]
        proc = start(*args, "--progress=none")
        first_write(proc, nodes[0])
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) in (0, 130)
        stopped += proc.returncode == 130
        for node in nodes:
            state = reported(node)
            if marked(node):
                assert not has_valid_table(node) and state is not None, (attempt, node)
                assert state.startswith("incomplete restore of base"), state
            elif read_bytes(node, 0, len(OLD_HEAD)) != OLD_HEAD:  # else: never written to
                assert state is None and has_valid_table(node), (attempt, node)
        if proc.returncode == 130:  # a stopped target is finished by a new restore
            appliance(*args)
            for node in nodes:
                assert not marked(node) and has_valid_table(node)
    assert stopped >= 2, f"only {stopped} of 4 stops hit the job while it ran"


def test_the_interface_restores_onto_two_disks(saved: Saved, loops: Loops, tmp_path: Path) -> None:
    """What the TUI's Restore screen runs after its confirmations: one plan per disk, then
    one job that restores them all."""
    import threading

    from appliance.progress import Progress
    from tui.backend import EngineBackend

    nodes = [target(loops, tmp_path, f"t{n}.img") for n in range(2)]
    backend = EngineBackend(include_loop=True)
    plans = backend.plan_restores(str(saved.repo), "base", nodes)
    assert [p.target.node for p in plans] == nodes
    assert all(p.kind == "restore" and p.image == "base" for p in plans)
    spec = backend.restores_job(plans)
    assert spec.targets == tuple(p.target for p in plans) and spec.target is None
    summary = spec.run(Progress(), threading.Event())
    assert summary.lines[0].startswith("Restored image base onto 2 of 2 disks"), summary
    assert sum("restored and proven" in line for line in summary.lines) == 2
    for node in nodes:
        assert_equivalent(saved.source, node, same_size=True)

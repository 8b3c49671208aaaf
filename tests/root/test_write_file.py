"""`appliance write FILE TARGET...`: real image files (xorriso's hybrid ISO, xz, zip) onto
three loop disks at once, each read back by the test and compared byte for byte with the
source; the refusals leave a target's bytes unchanged; a damaged file leaves every target
marked incomplete."""

from __future__ import annotations

import json
import lzma
import random
import subprocess
import time
from pathlib import Path

import pytest
from kit.cli import appliance, file_digest, refused, result_json
from kit.diskbuild import MiB, sparse_file
from kit.diskcompare import fsck_part, partition_nodes, read_bytes, table
from kit.imagefiles import (
    DISK_SIZE,
    PART_END,
    hybrid_iso,
    partitioned_image,
    xz_file,
    zip_file,
)
from kit.interrupt import first_write, has_valid_table, kill_after, reported, start
from kit.loops import Loops

pytestmark = pytest.mark.root

MARKER = b"APPLIANCE INCOMPLETE RESTORE\n"


def targets(loops: Loops, directory: Path, count: int, size: int) -> list[tuple[str, Path]]:
    out = []
    for number in range(count):
        path = sparse_file(directory, f"target{number}.img", size)
        with open(path, "r+b") as handle:  # an old head: must be gone afterwards
            handle.write(b"\xee" * 4096)
        out.append((loops.attach(path), path))
    return out


def raw_bytes(source: Path) -> bytes:
    """The image's raw bytes, decoded by the test itself (not by the appliance)."""
    if source.suffix == ".xz":
        return lzma.decompress(source.read_bytes())
    if source.suffix == ".zip":
        import zipfile

        with zipfile.ZipFile(source) as archive:
            return archive.read("disk.img")
    return source.read_bytes()


@pytest.mark.parametrize("kind", ["iso", "xz", "zip", "split"])
def test_one_file_onto_three_disks(loops: Loops, tmp_path: Path, kind: str) -> None:
    if kind == "iso":
        source = hybrid_iso(tmp_path)
    else:
        raw = partitioned_image(loops, tmp_path)
        readme = tmp_path / "README.txt"
        readme.write_text("write disk.img to a stick\n")
        source = {"xz": xz_file, "zip": lambda r: zip_file(r, readme)}.get(kind, Path)(raw)
    expected = raw_bytes(source)
    if kind == "split":  # disk.img.aa, .ab, ...: named as the whole file
        subprocess.run(["split", "-b", "16M", str(raw), f"{raw}."], check=True)
        raw.unlink()
    disks = targets(loops, tmp_path, 3, 64 * MiB)
    output = "--progress=json" if kind == "zip" else "--json"  # the first implies the second
    proc = appliance("write", str(source), *(node for node, _ in disks), "--yes", output)
    result = result_json(proc)
    if kind == "zip":  # stdout holds JSON lines only: progress of each phase, then the result
        lines = [json.loads(line) for line in proc.stdout.splitlines()]
        phases = {line["phase"] for line in lines if line["type"] == "progress"}
        assert {"write", "verify", "done"} <= phases, phases
    assert result["ok"] is True and result["bytes"] == len(expected)
    assert [v["ok"] for v in result["verdicts"]] == [True, True, True]
    for node, _ in disks:
        assert read_bytes(node, 0, len(expected)) == expected, f"{node} differs from {source}"
    if kind != "iso":  # the written disk is a working disk: its table and its filesystem
        for node, _ in disks:
            fsck_part(partition_nodes(node)[1], "ext4")
        # loop disks read zeros after a discard: the image's empty windows were not written
        assert all(v["skipped_zero_bytes"] >= 4 * MiB for v in result["verdicts"]), result


def test_too_small_target_refused_unchanged(loops: Loops, tmp_path: Path) -> None:
    raw = partitioned_image(loops, tmp_path)
    # ext4's backup superblocks lie past 20 MiB, and its partition ends at PART_END
    (node, path), *_ = targets(loops, tmp_path, 1, 20 * MiB)
    before = file_digest(path)
    proc = appliance("write", str(raw), node, "--yes", check=False)
    refused(proc, 5, "too small")
    assert file_digest(path) == before, "a refused write changed the target"


def test_target_with_other_sector_size_refused(loops: Loops, tmp_path: Path) -> None:
    """The image's table counts 512-byte sectors: on a 4Kn disk it would point elsewhere."""
    raw = partitioned_image(loops, tmp_path)
    path = sparse_file(tmp_path, "target4k.img", 64 * MiB)
    node = loops.attach(path, sector_size=4096)
    before = file_digest(path)
    refused(appliance("write", str(raw), node, "--yes", check=False), 5, "4096-byte sectors")
    assert file_digest(path) == before


@pytest.mark.parametrize("compressed", [False, True])
def test_smaller_target_with_zero_tail(loops: Loops, tmp_path: Path, compressed: bool) -> None:
    """Sticks of one size differ: the image's last MiBs hold only zeros, so they may go."""
    raw = partitioned_image(loops, tmp_path)
    source = xz_file(raw) if compressed else raw
    size = DISK_SIZE - 4 * MiB
    (node, _), *_ = targets(loops, tmp_path, 1, size)
    result = result_json(appliance("write", str(source), node, "--yes", "--json"))
    assert result["verdicts"][0]["ok"] is True and result["verdicts"][0]["bytes"] == size
    assert read_bytes(node, 0, size) == raw.read_bytes()[:size]
    fsck_part(partition_nodes(node)[1], "ext4")


def test_smaller_target_for_a_gpt_image(loops: Loops, tmp_path: Path) -> None:
    """A GPT image's tail holds its backup header, never zeros: the target is taken because
    the partitions end before its end, and its GPT is rebuilt with the backup at the end."""
    raw = partitioned_image(loops, tmp_path, label="gpt")
    size = DISK_SIZE - 4 * MiB
    (node, _), *_ = targets(loops, tmp_path, 1, size)
    result = result_json(appliance("write", str(raw), node, "--yes", "--json"))
    assert result["targets"][0]["gpt_rebuilt"] is True
    assert result["verdicts"][0]["ok"] is True, result
    assert read_bytes(node, MiB, PART_END - MiB) == raw.read_bytes()[MiB:PART_END]
    verify = subprocess.run(["sgdisk", "-v", node], capture_output=True, text=True, check=True)
    assert "No problems found" in verify.stdout, verify.stdout
    mine, theirs = table(node, ignore_size=True), table(str(raw), ignore_size=True)
    assert mine["partitions"] == theirs["partitions"]
    fsck_part(partition_nodes(node)[1], "ext4")


def test_damaged_xz_leaves_every_target_incomplete(loops: Loops, tmp_path: Path) -> None:
    raw = partitioned_image(loops, tmp_path)
    source = xz_file(raw)
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # damaged in the middle; its index still reads
    source.write_bytes(bytes(data))
    disks = targets(loops, tmp_path, 3, 64 * MiB)
    proc = appliance("write", str(source), *(node for node, _ in disks), "--yes", check=False)
    sentence = refused(proc, 9, "damaged")
    for node, _ in disks:
        assert node in sentence
        head = read_bytes(node, 0, 512)
        assert head.startswith(MARKER), f"{node} does not say it is incomplete"
        assert head[510:512] != b"\x55\xaa"
        table = subprocess.run(["sfdisk", "--json", node], capture_output=True, text=True)
        assert table.returncode != 0 or '"partitions"' not in table.stdout, table.stdout


def test_truncated_xz_refused_before_writing(loops: Loops, tmp_path: Path) -> None:
    """Cut short, its index is gone: the size is learnt by a first read, which fails."""
    raw = partitioned_image(loops, tmp_path)
    source = xz_file(raw)
    source.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    (node, path), *_ = targets(loops, tmp_path, 1, 64 * MiB)
    before = file_digest(path)
    refused(appliance("write", str(source), node, "--yes", check=False), 9, "cut short")
    assert file_digest(path) == before


def test_dry_run_and_confirmation_write_nothing(loops: Loops, tmp_path: Path) -> None:
    source = hybrid_iso(tmp_path)
    disks = targets(loops, tmp_path, 2, 64 * MiB)
    nodes = [node for node, _ in disks]
    before = [file_digest(path) for _, path in disks]
    plan = result_json(appliance("write", str(source), *nodes, "--dry-run", "--json"))
    assert [t["target"] for t in plan["targets"]] == nodes
    steps = [s["step"] for s in plan["steps"]]
    assert steps[0] == "MarkWriteIncomplete"
    assert steps.index("CopyImage") < steps.index("WriteTableLast")
    refused(appliance("write", str(source), *nodes, check=False), 5, "add --yes")
    refused(appliance("write", str(source), nodes[0], nodes[0], "--yes", check=False), 5, "twice")
    assert [file_digest(path) for _, path in disks] == before


def test_sigkill_while_writing_leaves_no_good_looking_disk(loops: Loops, tmp_path: Path) -> None:
    """Killed at random moments, a target holds the marker and no table (or, killed after
    its last write, the finished image); writing it again finishes it."""
    raw = partitioned_image(loops, tmp_path, size=96 * MiB, part_end=88 * MiB)
    source = xz_file(raw)
    (node, _), *_ = targets(loops, tmp_path, 1, 128 * MiB)
    args = ["write", str(source), node, "--yes"]
    proc = start(*args)  # how long the writing takes here
    began = time.monotonic() + first_write(proc, node)
    assert proc.wait() == 0
    duration = time.monotonic() - began
    rng = random.Random(5)
    interrupted = 0
    for attempt in range(8):
        if not kill_after(start(*args), node, rng.uniform(0.0, duration * 0.8)):
            continue
        state = reported(node)
        if state is None:
            assert has_valid_table(node), attempt
            continue
        interrupted += 1
        assert not has_valid_table(node), attempt
        assert state.startswith("incomplete write of the image file disk.img.xz"), state
    assert interrupted >= 4, f"only {interrupted} of 8 kills hit the write while it wrote"
    appliance(*args)
    assert reported(node) is None
    assert read_bytes(node, 0, raw.stat().st_size) == raw.read_bytes()


def test_a_target_that_fails_halfway_stops_only_itself(loops: Loops, tmp_path: Path) -> None:
    """A stick that dies mid-write (its loop file lives on an 8 MiB tmpfs: past that every
    write fails) is marked incomplete and named; the others are written and verified."""
    raw = partitioned_image(loops, tmp_path)
    small = tmp_path / "small-tmpfs"  # not below loops.mount_root: detach would unmount it
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    try:
        dying = loops.attach(sparse_file(small, "dying.img", 64 * MiB))
        (good, _), *_ = targets(loops, tmp_path, 1, 64 * MiB)
        proc = appliance("write", str(raw), dying, good, "--yes", "--progress=none", check=False)
        sentence = refused(proc, 4, f"Writing failed on {dying}")
        assert good not in sentence and "1 of 2 targets hold the image" in sentence
        assert f"{good}: written and verified" in proc.stdout
        assert f"{dying}: FAILED" in proc.stdout and "incomplete write" in proc.stdout
        assert read_bytes(good, 0, raw.stat().st_size) == raw.read_bytes()
        assert read_bytes(dying, 0, 512).startswith(MARKER)
        loops.detach(dying)
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_the_interface_writes_a_file_onto_two_disks(loops: Loops, tmp_path: Path) -> None:
    """What the TUI's Write file screen runs: one plan per disk for the confirmations, then
    one job that writes them all and reads each back."""
    import threading

    from appliance.progress import Progress
    from tui.backend import EngineBackend

    source = xz_file(partitioned_image(loops, tmp_path))
    expected = raw_bytes(source)
    disks = targets(loops, tmp_path, 2, 64 * MiB)
    backend = EngineBackend(include_loop=True)
    plans = backend.plan_write_file(str(source), [node for node, _ in disks])
    assert [p.target.node for p in plans] == [node for node, _ in disks]
    assert all(p.kind == "write" and "image file disk.img.xz" in p.source for p in plans)
    spec = backend.write_file_job(plans)
    summary = spec.run(Progress(), threading.Event())
    assert summary.verified == "Every disk was read back and matches the file.", summary
    assert sum("written and verified" in line for line in summary.lines) == 2
    for node, _ in disks:
        assert read_bytes(node, 0, len(expected)) == expected


@pytest.mark.parametrize("fmt", ["qcow2", "vhdx"])
def test_a_vm_disk_is_written_without_converting_it(loops: Loops, tmp_path: Path, fmt: str) -> None:
    """A VM disk file (made by qemu-img from a partitioned image) written onto two disks
    through qemu's raw view; each disk equals the image qemu-img itself reads."""
    raw = partitioned_image(loops, tmp_path)
    vm = tmp_path / f"disk.{fmt}"
    subprocess.run(["qemu-img", "convert", "-O", fmt, str(raw), str(vm)], check=True)
    expected = raw.read_bytes()
    disks = targets(loops, tmp_path, 2, 64 * MiB)
    result = result_json(
        appliance("write", str(vm), *(node for node, _ in disks), "--yes", "--json")
    )
    assert result["ok"] is True and result["kind"] == "vm" and result["bytes"] == len(expected)
    for node, _ in disks:
        assert read_bytes(node, 0, len(expected)) == expected, f"{node} differs from {vm}"
        fsck_part(partition_nodes(node)[1], "ext4")
    assert not list(Path("/var/tmp").glob("appliance-vm-*/disk.raw")), "a view was left"

"""restore of a disk held in a file, with the fit rules (appliance.jobs.filerestore): a
Windows system image folder (tests/kit/winbackup.py: a VHDX made by qemu-img from a GPT loop
disk with a FAT32 ESP, an MSR and an NTFS holding files with Unicode names) restored onto a
larger disk (NTFS grown) and a smaller one (NTFS shrunk), a target too small for the used
data refused with its bytes unchanged, a qcow2 of an ext4 disk restored with --file, and a
truncated VHDX refused. After every run, also a refused one, no loop device or raw view of
the job is left."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit.cli import appliance, file_digest, refused, result_json
from kit.diskbuild import MiB, build_4k_disk, sparse_file
from kit.diskcompare import (
    device_size,
    file_tree,
    fsck_part,
    partition_nodes,
    read_bytes,
    run,
    sgdisk_verify,
)
from kit.interrupt import first_write, marked, start
from kit.loops import Loops
from kit.plaindisk import build_plain_disk
from kit.winbackup import build_windows_disk, make_backup_folder, windows_files

pytestmark = pytest.mark.root

PC = "PC-LAB-07"
NAME = "PC-LAB-07 2026-11-30 10:15:00"


@dataclass
class Shelf:
    folder: Path  # holds WindowsImageBackup
    vhdx: Path
    source: str  # the loop disk the VHDX was made from (still attached)
    trees: dict[int, dict[str, object]]  # partition -> its file tree, on the source


@pytest.fixture(scope="module")
def shelf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shelf]:
    folder = tmp_path_factory.mktemp("winrestore")
    loops = Loops(folder)
    try:
        node = build_windows_disk(loops, folder / "windows.img", files=True)
        vhdx = folder / "disk.vhdx"
        run("qemu-img", "convert", "-f", "raw", "-O", "vhdx", node, str(vhdx))
        backup = make_backup_folder(folder / "shelf", PC, "2026-11-30 101500", [vhdx])
        [disk_file] = backup.glob("*.vhdx")
        parts = partition_nodes(node)
        trees = {1: file_tree(parts[1], "vfat"), 3: file_tree(parts[3], "ntfs")}
        yield Shelf(folder / "shelf", disk_file, node, dict(trees))
    finally:
        loops.cleanup()


@pytest.fixture
def views(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The raw views of this test's jobs are made here (so leftovers are this test's)."""
    folder = tmp_path / "views"
    folder.mkdir()
    monkeypatch.setenv("APPLIANCE_TMP", str(folder))
    return folder


def target_disk(loops: Loops, tmp_path: Path, size: int, seed: int = 1) -> tuple[str, Path]:
    """A loop disk whose first and last MiB hold random bytes (a disk in use)."""
    path = sparse_file(tmp_path, f"target-{size}.img", size)
    noise = random.Random(seed).randbytes(MiB)
    with open(path, "r+b") as handle:
        handle.write(noise)
        handle.seek(size - MiB)
        handle.write(noise)
    return loops.attach(path), path


def held_loops(views: Path, *files: Path) -> list[str]:
    """The loop devices on a raw view in `views` or on one of `files`."""
    listing = json.loads(run("losetup", "--list", "--json").stdout or '{"loopdevices": []}')
    backing = [dev.get("back-file") or "" for dev in listing.get("loopdevices", [])]
    return [b for b in backing if b.startswith(str(views)) or b in {str(f) for f in files}]


def assert_released(views: Path, *files: Path) -> None:
    """No raw view left in `views`, no loop device on it or on `files`."""
    assert list(views.iterdir()) == [], list(views.iterdir())
    assert held_loops(views, *files) == []


def assert_windows_restored(shelf: Shelf, node: str) -> dict[int, str]:
    sgdisk_verify(node)
    parts = partition_nodes(node)
    assert set(parts) == {1, 2, 3}
    run("ntfsfix", "-n", parts[3])
    run("ntfs-3g.probe", "--readonly", parts[3])
    fsck_part(parts[1], "vfat")
    assert file_tree(parts[3], "ntfs") == shelf.trees[3]
    assert file_tree(parts[1], "vfat") == shelf.trees[1]
    msr = read_bytes(parts[2], 0, device_size(parts[2]))
    assert msr.count(0) == len(msr), "the MSR holds what the backup holds: zeros"
    return parts


def ntfs_size(part: str) -> int:
    """The NTFS volume's own size, as ntfsresize reads it."""
    info = run("ntfsresize", "--info", "--force", "--no-progress-bar", part).stdout
    match = re.search(r"Current volume size: (\d+) bytes", info)
    assert match is not None, info
    return int(match.group(1))


def test_the_unicode_files_are_on_the_source(shelf: Shelf) -> None:
    """The builder's files are there to be compared (a restore cannot pass on empty trees)."""
    names = set(shelf.trees[3])
    assert {name for name in windows_files() if name in names} == set(windows_files())
    assert "Users/Zoë/Документы/отчёт.txt" in names


def test_a_windows_system_image_restores_onto_a_larger_disk(
    shelf: Shelf, loops: Loops, tmp_path: Path, views: Path
) -> None:
    node, _ = target_disk(loops, tmp_path, 320 * MiB)
    plan = appliance("restore", "--repo", str(shelf.folder), "--image", PC, node, "--dry-run")
    assert f"Windows system image {NAME}" in plan.stdout, plan.stdout
    assert "partition 2 (Microsoft reserved): no filesystem in the backup" in plan.stdout
    assert "grown from" in plan.stdout and "incomplete restore" in plan.stdout
    out = result_json(
        appliance(
            "restore",
            "--repo",
            str(shelf.folder),
            "--image",
            NAME,
            node,
            "--yes",
            "--json",
            "--verify-first",
        )
    )
    assert out["format"] == "windows_backup" and out["unsaved_partitions"] == [2], out
    parts = assert_windows_restored(shelf, node)
    source = partition_nodes(shelf.source)
    assert device_size(parts[3]) > device_size(source[3]) + 100 * MiB, "NTFS did not grow"
    assert ntfs_size(parts[3]) > ntfs_size(source[3]) + 100 * MiB, "the NTFS did not grow"
    assert_released(views, shelf.vhdx)


def test_onto_a_smaller_disk_the_ntfs_shrinks(
    shelf: Shelf, loops: Loops, tmp_path: Path, views: Path
) -> None:
    node, _ = target_disk(loops, tmp_path, 150 * MiB)
    assert 150 * MiB < device_size(shelf.source)
    appliance("restore", "--repo", str(shelf.folder), "--image", NAME, node, "--yes")
    parts = assert_windows_restored(shelf, node)
    source = partition_nodes(shelf.source)[3]
    assert device_size(parts[3]) < device_size(source), "the NTFS partition did not shrink"
    assert ntfs_size(parts[3]) < ntfs_size(source)
    assert_released(views, shelf.vhdx)


def test_a_target_too_small_for_the_used_data_is_refused_untouched(
    shelf: Shelf, loops: Loops, tmp_path: Path, views: Path
) -> None:
    node, path = target_disk(loops, tmp_path, 96 * MiB)
    before = file_digest(path)
    proc = appliance(
        "restore", "--repo", str(shelf.folder), "--image", NAME, node, "--yes", check=False
    )
    sentence = refused(proc, 5, "too small")
    assert node in sentence or "partition 3" in sentence, sentence
    assert file_digest(path) == before
    assert_released(views, shelf.vhdx)


def test_a_qcow2_of_an_ext4_disk_restores_with_file_onto_a_larger_disk(
    loops: Loops, tmp_path: Path, views: Path
) -> None:
    source = build_plain_disk(loops, tmp_path / "plain.img")
    qcow2 = tmp_path / "plain.qcow2"
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", source, str(qcow2))
    node, _ = target_disk(loops, tmp_path, 256 * MiB)
    out = result_json(appliance("restore", "--file", str(qcow2), node, "--yes", "--json"))
    assert out["format"] == "file" and out["unsaved_partitions"] == [], out
    sgdisk_verify(node)
    parts, old = partition_nodes(node), partition_nodes(source)
    run("e2fsck", "-fn", parts[2])
    assert file_tree(parts[2], "ext4") == file_tree(old[2], "ext4")
    assert file_tree(parts[1], "vfat") == file_tree(old[1], "vfat")
    assert device_size(parts[2]) > device_size(old[2]), "the ext4 partition did not grow"
    assert_released(views, qcow2)


def test_a_truncated_vhdx_gives_one_sentence_and_leaves_the_target(
    shelf: Shelf, loops: Loops, tmp_path: Path, views: Path
) -> None:
    node, path = target_disk(loops, tmp_path, 256 * MiB)
    before = file_digest(path)
    cut = tmp_path / "shelf"
    backup = make_backup_folder(cut, "PC-CUT", "2026-11-29 080000", [])
    damaged = backup / shelf.vhdx.name
    damaged.write_bytes(shelf.vhdx.read_bytes()[: 20 * MiB])
    proc = appliance("restore", "--file", str(damaged), node, "--yes", check=False)
    refused(proc, 8, "damaged")
    proc = appliance("restore", "--repo", str(cut), "--image", "PC-CUT", node, "--yes", check=False)
    refused(proc, 8, "cannot be restored")
    assert file_digest(path) == before
    assert_released(views, damaged)


def test_a_backup_of_two_disks_asks_which(
    shelf: Shelf, loops: Loops, tmp_path: Path, views: Path
) -> None:
    two = tmp_path / "two"
    disks = []
    for number in range(2):
        copy = tmp_path / f"disk{number}.vhdx"
        run("cp", "--sparse=always", str(shelf.vhdx), str(copy))
        disks.append(copy)
    make_backup_folder(two, "PC-TWO", "2026-11-28 070000", disks)
    node, path = target_disk(loops, tmp_path, 256 * MiB)
    proc = appliance("restore", "--repo", str(two), "--image", "PC-TWO", node, check=False)
    refused(proc, 2, "holds 2 disks")
    for how in (
        ["--image", "PC-TWO", "--disk", "2"],
        ["--image", "PC-TWO 2026-11-28 07:00:00 disk 2"],
    ):
        out = result_json(
            appliance("restore", "--repo", str(two), *how, node, "--dry-run", "--json")
        )
        assert out["disk"] == 2 and out["image"] == "PC-TWO 2026-11-28 07:00:00 disk 2", out
    proc = appliance(
        "restore", "--repo", str(two), "--image", "PC-TWO", "--disk", "3", node, check=False
    )
    refused(proc, 2, "has no disk 3")
    listing = appliance("images", "--repo", str(two)).stdout
    assert "disk 2: " in listing and "restorable" in listing, listing
    assert_released(views, *disks)


def test_file_and_image_together_are_a_usage_error(tmp_path: Path) -> None:
    proc = appliance(
        "restore", "--file", "x.qcow2", "--repo", str(tmp_path), "--image", "a", "sda",
        check=False,
    )  # fmt: skip
    refused(proc, 2, "not both")
    refused(appliance("restore", "sda", check=False), 2, "--file FILE")


def test_the_loop_device_over_the_file_itself_is_refused(
    loops: Loops, tmp_path: Path, views: Path
) -> None:
    source = build_plain_disk(loops, tmp_path / "plain.img")
    before = file_digest(tmp_path / "plain.img")
    proc = appliance("restore", "--file", str(tmp_path / "plain.img"), source, "--yes", check=False)
    refused(proc, 5, "holds the file")
    assert file_digest(tmp_path / "plain.img") == before
    assert_released(views)


def test_a_compressed_image_is_sent_to_write(tmp_path: Path, loops: Loops) -> None:
    node, path = target_disk(loops, tmp_path, 64 * MiB)
    packed = tmp_path / "disk.img.xz"
    run("xz", "-z", "-k", "-T1", str(path))
    os.rename(str(path) + ".xz", packed)
    proc = appliance("restore", "--file", str(packed), node, "--yes", check=False)
    refused(proc, 8, "appliance write")


def test_ctrl_c_releases_the_loop_device_and_the_view(
    shelf: Shelf, loops: Loops, tmp_path: Path, views: Path
) -> None:
    """Ctrl-C reaches the whole foreground group (the job and qemu-storage-daemon)."""
    node, _ = target_disk(loops, tmp_path, 320 * MiB)
    proc = start("restore", "--repo", str(shelf.folder), "--image", NAME, node, "--yes")
    first_write(proc, node)
    os.killpg(proc.pid, signal.SIGSTOP)  # frozen: the Ctrl-C cannot land after its end
    try:
        assert proc.poll() is None, "the restore finished before it could be stopped"
        os.killpg(proc.pid, signal.SIGINT)
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    assert proc.wait(timeout=120) == 130
    assert marked(node), "a stopped restore leaves its target marked incomplete"
    assert_released(views, shelf.vhdx)


def test_a_killed_restore_leaves_no_loop_device(
    shelf: Shelf, loops: Loops, tmp_path: Path, views: Path
) -> None:
    """SIGKILL of the job: the kernel detaches the autoclear loop device at its last close,
    and the raw view's daemon unmounts on its death signal (its empty folder is removed by
    the next job that opens a view)."""
    node, _ = target_disk(loops, tmp_path, 320 * MiB)
    proc = start("restore", "--repo", str(shelf.folder), "--image", NAME, node, "--yes")
    first_write(proc, node)
    assert proc.poll() is None, "the restore finished before it could be stopped"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while held_loops(views, shelf.vhdx) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert held_loops(views, shelf.vhdx) == []
    mounts = Path("/proc/self/mountinfo").read_text()
    while str(views) in mounts and time.monotonic() < deadline:
        time.sleep(0.1)
        mounts = Path("/proc/self/mountinfo").read_text()
    assert str(views) not in mounts, "the raw view is still mounted"


def test_a_vhdx_of_a_4k_sector_disk_restores_onto_a_4k_disk(
    loops: Loops, tmp_path: Path, views: Path
) -> None:
    """The file's disk is attached with the sector size its GPT was written with."""
    source = build_4k_disk(loops, tmp_path / "4k.img")
    vhdx = tmp_path / "4k.vhdx"
    run("qemu-img", "convert", "-f", "raw", "-O", "vhdx", source, str(vhdx))
    path = sparse_file(tmp_path, "target4k.img", 480 * MiB)
    node = loops.attach(path, sector_size=4096)
    appliance("restore", "--file", str(vhdx), node, "--yes")
    sgdisk_verify(node)
    parts, old = partition_nodes(node), partition_nodes(source)
    run("e2fsck", "-fn", parts[1])
    run("xfs_repair", "-n", parts[2])
    assert file_tree(parts[1], "ext4") == file_tree(old[1], "ext4")
    assert file_tree(parts[2], "xfs") == file_tree(old[2], "xfs")
    assert_released(views, vhdx)
    small = loops.attach(sparse_file(tmp_path, "target512.img", 480 * MiB))
    proc = appliance("restore", "--file", str(vhdx), small, "--yes", check=False)
    refused(proc, 5, "4096-byte sectors")
    assert_released(views, vhdx)

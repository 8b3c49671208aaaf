"""repomount on real loop devices: find the filesystems, mount read-only, remount read-write
for a save and back, refuse the job's own disk, reuse someone else's mount, unmount."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from kit.diskbuild import sparse_file
from kit.loops import Loops

from appliance.disk.probe import probe_disk
from appliance.errors import RepositoryError, SafetyRefusal
from appliance.repo import mount as repomount
from appliance.repo.mount import mount_table, mount_volume, volumes
from appliance.repo.repository import Repository

pytestmark = pytest.mark.root
MiB = 1024 * 1024


def sh(*args: str) -> None:
    subprocess.run(args, capture_output=True, text=True, check=True)


def mode(where: Path) -> str | None:
    for info in mount_table().values():
        if info.mountpoint == str(where):
            return "ro" if info.read_only else "rw"
    return None


@pytest.fixture
def stick(loops: Loops, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A GPT disk: p1 ext4 (holds a repository), p2 NTFS (empty)."""
    monkeypatch.setattr(repomount, "RUN_DIR", tmp_path / "run")
    node = loops.attach(sparse_file(tmp_path, "stick.img", 200 * MiB))
    subprocess.run(
        ["sfdisk", "--quiet", node],
        input="label: gpt\nsize=80MiB\nsize=80MiB\n",
        text=True,
        check=True,
        capture_output=True,
    )
    subprocess.run(["partx", "-a", node], capture_output=True)
    subprocess.run(["partx", "-u", node], capture_output=True)
    sh("mkfs.ext4", "-q", "-L", "IMAGES", f"{node}p1")
    sh("mkfs.ntfs", "-q", "-Q", "-F", f"{node}p2")
    where = loops.mountpoint("setup")
    sh("mount", f"{node}p1", str(where))
    Repository.open_or_create(where / "lab" / "images")
    sh("umount", str(where))
    return node


def test_volumes_lists_the_filesystems(stick: str) -> None:
    found = {v.node: v for v in volumes([probe_disk(stick)])}
    assert set(found) == {f"{stick}p1", f"{stick}p2"}
    assert found[f"{stick}p1"].label == "IMAGES" and found[f"{stick}p1"].mountpoint is None
    assert found[f"{stick}p2"].fstype == "ntfs" and "partition 2" in found[f"{stick}p2"].describe()


def test_read_only_then_read_write_for_a_save_then_unmounted(stick: str) -> None:
    mount = mount_volume(f"{stick}p1", writable=False)
    try:
        assert mount.owned and mode(mount.mountpoint) == "ro"
        assert mount.mountpoint.parent == repomount.RUN_DIR
        repo = mount.default_repository()
        assert repo == mount.mountpoint / "lab" / "images"
        with pytest.raises(OSError):
            (repo / "probe").write_text("x")
        mount.ensure(True)
        assert mode(mount.mountpoint) == "rw"
        (repo / "probe").write_text("x")
        mount.ensure(False)
        assert mode(mount.mountpoint) == "ro"
        again = mount_volume(f"{stick}p1", writable=False)  # the app's own mount, reused
        assert again.mountpoint == mount.mountpoint and again.owned
    finally:
        mount.unmount()
    assert mode(mount.mountpoint) is None and not mount.mountpoint.exists()


def test_ntfs_is_mounted_with_ntfs3g_and_remounted(stick: str) -> None:
    mount = mount_volume(f"{stick}p2", writable=False)
    try:
        assert mode(mount.mountpoint) == "ro"
        assert mount.default_repository() == mount.mountpoint / repomount.DEFAULT_FOLDER
        mount.ensure(True)
        Repository.open_or_create(mount.default_repository())
        assert (mount.mountpoint / repomount.DEFAULT_FOLDER / "repo.json").exists()
    finally:
        mount.unmount()
    assert mode(mount.mountpoint) is None


def test_the_jobs_own_disk_is_refused_before_mounting(stick: str) -> None:
    name = Path(stick).name
    with pytest.raises(SafetyRefusal, match="the disk this job"):
        mount_volume(f"{stick}p1", writable=True, avoid=[name], role="saves")
    assert all(
        not info.mountpoint.startswith(str(repomount.RUN_DIR)) for info in mount_table().values()
    )


def test_someone_elses_mount_is_used_and_left_alone(stick: str, loops: Loops) -> None:
    where = loops.mountpoint("theirs")
    sh("mount", "-o", "ro", f"{stick}p1", str(where))
    try:
        mount = mount_volume(f"{stick}p1", writable=False)
        assert mount.mountpoint == where and not mount.owned
        with pytest.raises(RepositoryError, match="read-only"):
            mount.ensure(True)
        mount.unmount()
        assert mode(where) == "ro"
    finally:
        sh("umount", str(where))


def test_a_disk_without_a_filesystem_is_a_sentence(loops: Loops, tmp_path: Path) -> None:
    node = loops.attach(sparse_file(tmp_path, "blank.img", 20 * MiB))
    with pytest.raises(RepositoryError, match="no filesystem"):
        mount_volume(node, writable=False)

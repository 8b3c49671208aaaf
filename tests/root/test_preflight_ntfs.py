"""preflight on real NTFS: hibernated (hiberfil.sys says HIBR) and dirty ($Volume flag), as
ntfs-3g's own tools see them, and the whole preflight of a real disk."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from kit.diskbuild import sparse_file
from kit.loops import Loops
from kit.ntfs import set_dirty

from appliance.disk.probe import probe_disk
from appliance.plan.preflight import (
    NtfsState,
    ntfs_state,
    preflight_save,
)

pytestmark = pytest.mark.root
MiB = 1024 * 1024


def sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=True)


@pytest.fixture
def windows(loops: Loops, tmp_path: Path) -> tuple[str, str, str]:
    """A GPT disk: an ext4 partition and an NTFS one; returns (disk, ext4 node, ntfs node)."""
    node = loops.attach(sparse_file(tmp_path, "win.img", 200 * MiB))
    subprocess.run(
        ["sfdisk", "--quiet", node],
        input="label: gpt\nsize=60MiB\nsize=100MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n",
        text=True,
        check=True,
        capture_output=True,
    )
    subprocess.run(["partx", "-a", node], capture_output=True)
    subprocess.run(["partx", "-u", node], capture_output=True)
    linux, ntfs = f"{node}p1", f"{node}p2"
    sh("mkfs.ext4", "-q", linux)
    sh("mkfs.ntfs", "-q", "-Q", "-F", "-L", "Windows", ntfs)
    return node, linux, ntfs


def test_a_clean_ntfs_is_neither_hibernated_nor_dirty(windows: tuple[str, str, str]) -> None:
    assert ntfs_state(windows[2]) == NtfsState(dirty=False, hibernated=False)


def test_hibernated_windows_is_seen(windows: tuple[str, str, str], loops: Loops) -> None:
    ntfs = windows[2]
    where = loops.mountpoint("ntfs")
    sh("ntfs-3g", ntfs, str(where))
    try:
        (where / "hiberfil.sys").write_bytes(b"HIBR" + bytes(3 * MiB))
    finally:
        sh("umount", str(where))
    state = ntfs_state(ntfs)
    assert state.hibernated is True and state.dirty is False


def test_dirty_flag_is_read_like_ntfsinfo_does(windows: tuple[str, str, str]) -> None:
    ntfs = windows[2]
    assert "Volume Flags: 0x0000" in sh("ntfsinfo", "-m", ntfs).stdout
    set_dirty(ntfs)
    assert "Volume Flags: 0x0001" in sh("ntfsinfo", "-m", "-f", ntfs).stdout
    assert ntfs_state(ntfs).dirty is True


def test_preflight_of_a_real_disk(windows: tuple[str, str, str], tmp_path: Path) -> None:
    node, _, ntfs = windows
    set_dirty(ntfs)
    report = preflight_save(probe_disk(node), str(tmp_path / "repo"))
    codes = {(f.code, f.partition) for f in report.findings}
    assert ("dirty", 2) in codes and ("space", None) in codes
    usage = {u.partition: u for u in report.usage}
    assert usage[1].method == "partclone" and 0 < (usage[1].used or 0) < 60 * MiB
    assert usage[2].method == "raw" and usage[2].used == 100 * MiB  # dirty: copied whole
    assert not report.blocked

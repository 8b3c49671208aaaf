"""A repository too small for the image: one sentence before anything is written."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from kit.cli import appliance, refused
from kit.diskbuild import build_gpt_disk, sparse_file
from kit.loops import Loops

pytestmark = pytest.mark.root


def test_save_into_a_full_repository(loops: Loops, tmp_path: Path) -> None:
    source = build_gpt_disk(loops, tmp_path / "source.img")
    stick = loops.attach(sparse_file(tmp_path, "stick.img", 3 * 1024 * 1024))
    subprocess.run(["mkfs.ext4", "-q", "-F", "-N", "64", stick], check=True)  # ~2 MB free
    where = loops.mountpoint("stick")
    subprocess.run(["mount", stick, str(where)], check=True)
    repo = where / "repo"
    proc = appliance("save", source, "--repo", str(repo), "--image", "big", "--create", check=False)
    refused(proc, 6, "free some space")
    # refused by the free-space estimate before the repository was even created
    assert not repo.exists()
    subprocess.run(["umount", str(where)], check=True)


def test_a_repository_that_fills_up_during_the_save(loops: Loops, tmp_path: Path) -> None:
    """The free-space estimate assumes data compresses; random data does not, so this save
    passes the estimate and fills the repository halfway: one sentence, exit 6, and an
    incomplete image that is never offered for restore."""
    disk = loops.attach(sparse_file(tmp_path, "source.img", 96 * 1024 * 1024))
    subprocess.run(["sfdisk", "--quiet", disk], input="label: gpt\n,,L\n", text=True, check=True)
    subprocess.run(["partx", "-u", disk], check=True)
    part = f"{disk}p1"
    subprocess.run(["mkfs.ext4", "-q", "-F", part], check=True)
    data = loops.mountpoint("data")
    subprocess.run(["mount", part, str(data)], check=True)
    (data / "random.bin").write_bytes(random.Random(7).randbytes(40 * 1024 * 1024))
    subprocess.run(["umount", str(data)], check=True)
    stick = loops.attach(sparse_file(tmp_path, "stick.img", 40 * 1024 * 1024))
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", stick], check=True)  # ~34 MB free
    where = loops.mountpoint("stick")
    subprocess.run(["mount", stick, str(where)], check=True)
    try:
        repo = where / "repo"
        proc = appliance(
            "save", disk, "--repo", str(repo), "--image", "big", "--create", check=False
        )
        refused(proc, 6, "is full")
        listed = appliance("images", "--repo", str(repo)).stdout
        assert "INCOMPLETE" in listed
        target = loops.attach(sparse_file(tmp_path, "target.img", 96 * 1024 * 1024))
        refused(
            appliance(
                "restore", "--repo", str(repo), "--image", "big", target, "--yes", check=False
            ),
            8,
            "incomplete",
        )
    finally:
        subprocess.run(["umount", str(where)], check=True)

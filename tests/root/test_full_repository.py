"""A repository too small for the image: one sentence before anything is written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cli import appliance, refused
from conftest import Loops
from diskbuild import build_gpt_disk, sparse_file

pytestmark = pytest.mark.root


def test_save_into_a_full_repository(loops: Loops, tmp_path: Path) -> None:
    source = build_gpt_disk(loops, tmp_path / "source.img")
    stick = loops.attach(sparse_file(tmp_path, "stick.img", 3 * 1024 * 1024))
    subprocess.run(["mkfs.ext4", "-q", "-F", "-N", "64", stick], check=True)  # ~2 MB free
    where = loops.mountpoint("stick")
    subprocess.run(["mount", stick, str(where)], check=True)
    repo = where / "repo"
    proc = appliance("save", source, "--repo", str(repo), "--image", "big", "--create",
                     check=False)
    refused(proc, 6, "free some space")
    # refused by the free-space estimate before the repository was even created
    assert not repo.exists()
    subprocess.run(["umount", str(where)], check=True)

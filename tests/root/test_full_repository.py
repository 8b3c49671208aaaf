"""A repository that fills up: one sentence, an incomplete image, a repository that works."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cli import appliance, refused, result_json
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
    proc = appliance("save", source, "--repo", str(repo), "--image", "big", check=False)
    refused(proc, 6, "is full")
    out = result_json(appliance("images", "--repo", str(repo), "--json"))
    assert [(i["name"], i["complete"]) for i in out["images"]] == [("big", False)]
    assert not (repo / "lock").exists()  # released on the way out
    # the repository still works: gc frees the partial chunks
    result_json(appliance("gc", "--repo", str(repo), "--json"))

"""The committed format-v1 repository (tests/fixtures/v1-repo, made by the appliance before
format v2 existed; tests/fixtures/make-v1-repo.sh) still restores and verifies, and a restore
from it says once that the image is not authenticated."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kit.cli import appliance
from kit.diskbuild import MiB, sparse_file
from kit.diskcompare import mounted, partition_nodes
from kit.loops import Loops

pytestmark = pytest.mark.root

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "v1-repo"


def test_v1_fixture_restores_and_verifies(loops: Loops, tmp_path: Path) -> None:
    repo = tmp_path / "v1-repo"
    shutil.copytree(FIXTURE, repo)  # a restore writes a line into the image's log
    appliance("verify", "--repo", str(repo), "--image", "tiny")
    target = loops.attach(sparse_file(tmp_path, "target.img", 12 * MiB))
    proc = appliance("restore", "--repo", str(repo), "--image", "tiny", target, "--yes")
    notes = [line for line in proc.stderr.splitlines() if "not authenticated" in line]
    assert len(notes) == 1 and notes[0].startswith("note: the image tiny"), proc.stderr
    appliance("verify", "--repo", str(repo), "--image", "tiny", "--against", target)
    with mounted(partition_nodes(target)[1], "ext4") as root:
        text = (root / "hello.txt").read_text()
    assert text == "format v1 fixture: restored and verified in every test run\n"
    # the fixture itself is what the old appliance wrote, untouched by these jobs
    assert sorted(p.name for p in (repo / "chunks").rglob("*") if p.is_file()) == sorted(
        p.name for p in (FIXTURE / "chunks").rglob("*") if p.is_file()
    )

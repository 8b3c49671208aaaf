"""`appliance disks` as a user reads it: a filesystem made on a whole disk (no partition
table) is shown as such, not as an empty disk; every line fits an 80-column console."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kit.cli import appliance
from kit.diskbuild import MiB, build_gpt_disk, sparse_file
from kit.diskcompare import run
from kit.loops import Loops

pytestmark = pytest.mark.root


def test_whole_disk_filesystem_and_80_columns(loops: Loops, tmp_path: Path) -> None:
    whole = loops.attach(sparse_file(tmp_path, "whole.img", 64 * MiB))
    run("mkfs.ext4", "-q", "-L", "WHOLEDISK", "-U", "2c5e2a4e-6f0e-4d7a-9a51-5d1b8a3a3c11", whole)
    blank = loops.attach(sparse_file(tmp_path, "blank.img", 64 * MiB))
    gpt = build_gpt_disk(loops, tmp_path / "gpt.img")

    data = json.loads(appliance("disks", "--all", "--json").stdout)
    disks = {d["node"]: d for d in data["disks"]}
    assert disks[whole]["table"] is None and disks[whole]["partitions"] == []
    fs = disks[whole]["filesystem"]
    assert (fs["type"], fs["label"], fs["uuid"]) == (
        "ext4",
        "WHOLEDISK",
        "2c5e2a4e-6f0e-4d7a-9a51-5d1b8a3a3c11",
    )
    assert disks[blank]["filesystem"] is None
    assert disks[gpt]["filesystem"] is None and len(disks[gpt]["partitions"]) == 4

    text = appliance("disks", "--all").stdout
    wide = [line for line in text.splitlines() if len(line) > 80]
    assert not wide, wide
    blocks = {block.splitlines()[0].split()[0]: block for block in text.split("\n\n")}
    assert 'the whole disk holds a filesystem, ext4 "WHOLEDISK"' in blocks[Path(whole).name]
    assert "no partition table" in blocks[Path(blank).name]
    assert "holds a filesystem" not in blocks[Path(blank).name]
    gpt_block = blocks[Path(gpt).name]
    assert "Microsoft basic data" in gpt_block and "UUID" in gpt_block


def test_plans_and_results_fit_80_columns(loops: Loops, tmp_path: Path) -> None:
    source = build_gpt_disk(loops, tmp_path / "gpt.img")
    repo = str(tmp_path / "repo")
    appliance("save", "--create", source, "--repo", repo, "--image", "lab-2026", "--progress=none")
    target = loops.attach(sparse_file(tmp_path, "small.img", 400 * MiB))
    run("mkfs.ext4", "-q", "-L", "OLDDATA", target)
    plan = appliance("restore", "--repo", repo, "--image", "lab-2026", target, "--dry-run")
    clone = appliance("clone", source, target, "--dry-run")
    for text in (plan.stdout, clone.stdout):
        wide = [line for line in text.splitlines() if len(line) > 80]
        assert not wide, wide
    for text in (plan.stdout, clone.stdout):
        assert "a filesystem on the whole disk (no partition table): ext4 OLDDATA" in text
        assert "filesystem shrinks" in " ".join(text.split())

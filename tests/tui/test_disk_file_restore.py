"""The Restore screen's list holds the disk image files of the repository folder beside the
images (a qcow2 made by qemu-img from a real loop disk, a raw .img, an .img.xz), and the
interface's backend restores a VM disk file with the fit rules, as `restore --file` does:
onto a larger disk its ext4 grows and passes e2fsck, its files equal the source's. A
compressed file is listed with the sentence that sends it to Write file."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from kit.diskbuild import MiB, sparse_file
from kit.diskcompare import file_tree, partition_nodes, run
from kit.loops import Loops
from kit.plaindisk import PLAIN_DISK_SIZE, build_plain_disk

from appliance.progress import Progress
from tui.backend import EngineBackend
from tui.widgets.imagetable import restorable

pytestmark = pytest.mark.root


def test_disk_files_are_listed_and_a_qcow2_restores_with_the_fit_rules(
    tmp_path: Path, loops: Loops, monkeypatch: pytest.MonkeyPatch
) -> None:
    views = tmp_path / "views"
    views.mkdir()
    monkeypatch.setenv("APPLIANCE_TMP", str(views))
    source = build_plain_disk(loops, tmp_path / "plain.img")
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", source, str(shelf / "laptop.qcow2"))
    run("cp", "--sparse=always", str(tmp_path / "plain.img"), str(shelf / "stick.img"))
    run("sh", "-c", f"xz -T0 -0 -c {shelf / 'stick.img'} > {shelf / 'old.img.xz'}")
    (shelf / "notes.txt").write_text("not a disk\n")
    root_before = file_tree(partition_nodes(source)[2], "ext4")
    target = loops.attach(sparse_file(tmp_path, "ssd.img", PLAIN_DISK_SIZE + 64 * MiB))
    backend = EngineBackend(include_loop=True, only={os.path.basename(target)})

    rows = {row.name: row for row in backend.images(str(shelf))}
    assert sorted(rows) == ["laptop.qcow2", "old.img.xz", "stick.img"]
    assert restorable(rows["laptop.qcow2"]) and restorable(rows["stick.img"])
    assert rows["laptop.qcow2"].disk is not None
    assert rows["laptop.qcow2"].disk.size == PLAIN_DISK_SIZE  # the disk it holds, not the file
    assert not restorable(rows["old.img.xz"])
    assert "Write file" in (rows["old.img.xz"].problem or "")

    plan = backend.plan_restore(str(shelf), "laptop.qcow2", target)
    assert "grown" in "\n".join(plan.text.layout), plan.text.layout
    assert list(views.iterdir()) == [], "the plan holds no raw view open"
    with open(target, "rb") as blank:
        assert blank.read(MiB) == bytes(MiB), "written by the plan"
    summary = backend.write_job(plan).run(Progress(), threading.Event())
    assert "Restored" in summary.lines[0], summary.lines
    parts = partition_nodes(target)
    run("e2fsck", "-fn", parts[2])
    assert file_tree(parts[2], "ext4") == root_before
    assert list(views.iterdir()) == []

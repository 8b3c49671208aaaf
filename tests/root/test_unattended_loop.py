"""Unattended save, verify and restore from a kernel command line, on loop devices: the
repository found by its label and mounted by the job, the disks named by kernel name."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import pytest
from kit.diskbuild import GPT_DISK_SIZE, MiB, build_gpt_disk, sparse_file
from kit.diskcompare import assert_equivalent, run
from kit.loops import Loops

from appliance.cli import unattended
from appliance.cli.unattended import Console
from appliance.repo import mount as repomount

pytestmark = pytest.mark.root


def _repo_disk(loops: Loops, path: Path, label: str) -> str:
    """A 300 MiB disk with one ext4 partition labelled ``label``; returns the partition node."""
    sparse_file(path.parent, path.name, 300 * MiB)
    node = loops.attach(path)
    run("sfdisk", "--quiet", node, input="label: gpt\nstart=2048, type=linux\n")
    run("partx", "-u", node)
    part = f"{node}p1"
    run("mkfs.ext4", "-q", "-F", "-L", label, part)
    return part


def _job(line: str) -> tuple[int, str, list[str]]:
    out = io.StringIO()
    serial = io.StringIO()
    actions: list[str] = []
    code = unattended.run(line, Console(out, [serial]), power_action=actions.append)
    assert out.getvalue() == serial.getvalue()  # the serial console sees every line
    return code, out.getvalue(), actions


def test_unattended_save_verify_restore(
    loops: Loops, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unattended.time, "sleep", lambda s: None)
    label = "T" + uuid.uuid4().hex[:10].upper()  # unique: other tests' disks may say IMAGES
    src = build_gpt_disk(loops, tmp_path / "src.img")
    dst = loops.attach(sparse_file(tmp_path, "dst.img", GPT_DISK_SIZE))
    repo_part = _repo_disk(loops, tmp_path / "repo.img", label)
    root = tmp_path / "run"
    monkeypatch.setattr(repomount, "RUN_DIR", root)
    common = f"boot=live quiet appliance.repo=LABEL={label} appliance.image=pc1 appliance.wait=2"

    code, text, actions = _job(
        f"{common} appliance.job=save appliance.source={src} "
        "appliance.repo_dir=lab/images appliance.then=poweroff"
    )
    assert code == 0, text
    assert actions == ["poweroff"]
    assert f"{repo_part} mounted read-write at {root}/repo-{Path(repo_part).name}" in text
    assert "unattended save done: Saved" in text and "as image pc1" in text
    assert not os.path.ismount(root / f"repo-{Path(repo_part).name}")  # unmounted at the end

    code, text, actions = _job(f"{common} appliance.job=verify appliance.repo_dir=lab/images")
    assert code == 0, text
    assert "mounted read-only" in text and "image pc1 is intact" in text
    assert actions == []  # then=shell by default

    # a target named wrongly: the sentence, a non-zero exit, no power-off, nothing written
    code, text, actions = _job(
        f"{common} appliance.job=restore appliance.repo_dir=lab/images "
        "appliance.target=serial:NO-SUCH-DISK appliance.then=reboot"
    )
    assert code == 4 and actions == []
    assert "FAILED: No disk has the serial 'NO-SUCH-DISK'" in text

    # the repository's own disk as the target: refused by the safety rules
    repo_disk = repo_part.removesuffix("p1")
    code, text, actions = _job(
        f"{common} appliance.job=restore appliance.repo_dir=lab/images "
        f"appliance.target={repo_disk} appliance.then=reboot"
    )
    assert code == 5 and actions == [], text
    assert "holds the repository" in text

    code, text, actions = _job(
        f"{common} appliance.job=restore appliance.repo_dir=lab/images "
        f"appliance.target={Path(dst).name} appliance.then=reboot"
    )
    assert code == 0, text
    assert actions == ["reboot"]
    assert "will be ERASED" in text and "unattended restore done" in text
    assert not os.path.ismount(root / f"repo-{Path(repo_part).name}")
    assert_equivalent(src, dst)

    code, text, _ = _job(
        f"{common} appliance.job=verify appliance.repo_dir=lab/images appliance.target={dst}"
    )
    assert code == 0, text
    assert f"{dst} holds the same data" in text

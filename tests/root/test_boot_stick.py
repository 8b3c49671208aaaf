"""The stick the appliance booted from, on a real loop device: its table reads as an Apple
map (as the hybrid ISO's does) and its medium is mounted where the appliance is told
live-boot mounted it (tests/kit/bootstick.py). `appliance disks` names it "this boot stick";
every job given it as a target, as a source or as the disk to verify says one sentence,
exits 5 and writes nothing."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kit.bootstick import SEAM, BootStick, boot_stick
from kit.cli import appliance, file_digest, refused
from kit.diskbuild import MiB, sparse_file
from kit.saved import Saved, saved_gpt_disk

pytestmark = pytest.mark.root

SENTENCE = "is the stick this appliance booted from; choose another disk."


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Saved]:
    with saved_gpt_disk(tmp_path_factory.mktemp("bootstick")) as saved:
        yield saved


@pytest.fixture(scope="module")
def stick(saved: Saved) -> Iterator[BootStick]:
    with boot_stick(saved.loops, saved.folder, saved.loops.mountpoint("live-medium")) as made:
        yield made


@pytest.fixture
def live(stick: BootStick, monkeypatch: pytest.MonkeyPatch) -> BootStick:
    """The appliance run by the test believes it booted from `stick`."""
    monkeypatch.setenv(SEAM, str(stick.medium))
    return stick


def _listed(node: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, Any]]:
    data = json.loads(appliance("disks", "--json", "--all").stdout)
    disk = next((d for d in data["disks"] if d["node"] == node), None)
    problems = [p for p in data["problems"] if p["node"] == node]
    return disk, problems, data


def test_disks_names_the_stick_and_nothing_else(
    stick: BootStick, saved: Saved, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SEAM, raising=False)
    disk, problems, _ = _listed(stick.node)  # not booted from it: an unreadable "mac" table
    assert disk is None and problems and "mac" in problems[0]["error"], problems
    monkeypatch.setenv(SEAM, str(stick.medium))
    disk, problems, data = _listed(stick.node)
    assert disk is not None and not problems
    assert disk["boot_stick"] is True
    assert (disk["table"], disk["partitions"], disk["filesystem"]) == (None, [], None)
    assert data["boot_medium"] == {
        "mountpoint": str(stick.medium),
        "fstype": "ext4",
        "in_ram": False,
        "note": None,
    }
    source = next(d for d in data["disks"] if d["node"] == saved.source)
    assert source["boot_stick"] is False and source["table"] == "gpt"
    text = appliance("disks", "--all").stdout
    block = next(b for b in text.split("\n\n") if b.startswith(Path(stick.node).name + " "))
    assert "  this boot stick: the appliance runs from it; no job reads or writes it" in block


def _refused_untouched(stick: BootStick, *args: str) -> str:
    before = file_digest(stick.image)
    sentence = refused(appliance(*args, check=False), 5, SENTENCE)
    assert file_digest(stick.image) == before, f"appliance {args[0]} wrote to the boot stick"
    return sentence


def test_restore_onto_the_stick_is_refused(live: BootStick, saved: Saved) -> None:
    repo = str(saved.repo)
    sentence = _refused_untouched(live, "restore", "--repo", repo, "--image", "base", live.node)
    assert sentence.endswith(f"at {live.node} {SENTENCE}"), sentence
    _refused_untouched(
        live, "restore", "--repo", repo, "--image", "base", live.node, "--yes", "--dry-run"
    )


def test_a_restore_onto_several_disks_with_the_stick_writes_none(
    live: BootStick, saved: Saved, tmp_path: Path
) -> None:
    other = saved.loops.attach(sparse_file(tmp_path, "other.img", 600 * MiB))
    before = file_digest(tmp_path / "other.img")
    repo = str(saved.repo)
    _refused_untouched(
        live, "restore", "--repo", repo, "--image", "base", other, live.node, "--yes"
    )
    assert file_digest(tmp_path / "other.img") == before


def test_clone_onto_or_from_the_stick_is_refused(live: BootStick, saved: Saved) -> None:
    _refused_untouched(live, "clone", saved.source, live.node, "--yes")
    _refused_untouched(live, "clone", live.node, saved.source, "--yes", "--dry-run")


def test_write_onto_the_stick_is_refused(live: BootStick, tmp_path: Path) -> None:
    raw = sparse_file(tmp_path, "small.img", 16 * MiB)
    subprocess.run(
        ["sfdisk", "-q", str(raw)], input="label: gpt\nsize=8MiB\n", text=True, check=True
    )
    _refused_untouched(live, "write", str(raw), live.node, "--yes")


def test_save_of_the_stick_is_refused(live: BootStick, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _refused_untouched(live, "save", live.node, "--repo", str(repo), "--image", "x", "--create")
    assert not repo.exists()


def test_toram_marks_no_disk_and_says_so(
    stick: BootStick, saved: Saved, monkeypatch: pytest.MonkeyPatch
) -> None:
    """live-boot's toram: the medium copied into a tmpfs moved onto the medium's place and
    the stick unmounted; nothing then tells which disk it was, and `disks` says so."""
    medium = saved.loops.mountpoint("ram-medium")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(medium)], check=True)
    try:
        monkeypatch.setenv(SEAM, str(medium))
        disk, problems, data = _listed(stick.node)
        assert disk is None and problems, "the stick was marked from a medium in RAM"
        assert not any(d["boot_stick"] for d in data["disks"])
        assert data["boot_medium"]["in_ram"] is True and data["boot_medium"]["fstype"] == "tmpfs"
        text = appliance("disks", "--all").stdout
        assert "The appliance runs from RAM (booted with toram)" in text
        assert "this boot stick" not in text
    finally:
        subprocess.run(["umount", str(medium)], check=True)


def test_verify_against_the_stick_is_refused(live: BootStick, saved: Saved) -> None:
    repo = str(saved.repo)
    _refused_untouched(live, "verify", "--repo", repo, "--image", "base", "--against", live.node)

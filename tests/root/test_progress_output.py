"""What scripts read: with --progress=json stdout holds JSON lines only, and the progress
never passes 100 % nor shows a total of 0 while bytes move, a shrinking partition included."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kit.cli import appliance
from kit.diskbuild import MiB, build_gpt_disk, sparse_file
from kit.loops import Loops

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Loops, str, Path, Path]]:
    folder = tmp_path_factory.mktemp("progress")
    loops = Loops(folder)
    try:
        source = build_gpt_disk(loops, folder / "source.img")
        repo = folder / "repo"
        proc = appliance(
            "save",
            "--create",
            source,
            "--repo",
            str(repo),
            "--image",
            "img",
            "--progress=json",
            "--json",
        )
        json_only(proc)
        yield loops, source, repo, folder
    finally:
        loops.cleanup()


def json_only(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """Every stdout line is a JSON object; the last one is the result."""
    lines = proc.stdout.splitlines()
    assert lines, proc.stderr
    objects = []
    for line in lines:
        try:
            objects.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not JSON on stdout: {line!r}") from None
    assert objects[-1]["type"] == "result", objects[-1]
    assert all(o["type"] == "progress" for o in objects[:-1])
    return objects


def check_progress(events: list[dict[str, Any]], moving: str) -> None:
    """done <= total always, never a total of 0 once bytes move, ends at 100 %."""
    assert events, "no progress events"
    for ev in events:
        assert 0 <= ev["done"] <= ev["total"] or ev["total"] == 0 == ev["done"], ev
    started = [i for i, ev in enumerate(events) if ev["phase"] == moving]
    assert started, [ev["phase"] for ev in events]
    for ev in events[started[0] :]:
        assert ev["total"] > 0, ev
    last = events[-1]
    assert last["phase"] == "done" and last["done"] == last["total"], last


@pytest.mark.parametrize("job", ["restore", "clone"])
def test_shrinking_restore_and_clone_progress(
    saved: tuple[Loops, str, Path, Path], tmp_path: Path, job: str
) -> None:
    loops, source, repo, _ = saved
    target = loops.attach(sparse_file(tmp_path, "small.img", 400 * MiB))
    if job == "restore":
        args = ["restore", "--repo", str(repo), "--image", "img", target]
    else:
        args = ["clone", source, target]
    proc = appliance(*args, "--yes", "--progress=json", "--json")
    objects = json_only(proc)
    assert objects[-1]["fit"]["resize"] == 3  # the NTFS partition shrank
    check_progress([o for o in objects if o["type"] == "progress"], job)
    loops.detach(target)


def test_verify_and_save_keep_stdout_to_json(saved: tuple[Loops, str, Path, Path]) -> None:
    loops, source, repo, _ = saved
    for args in (
        ["verify", "--repo", str(repo), "--image", "img"],
        ["verify", "--repo", str(repo), "--image", "img", "--against", source],
    ):
        objects = json_only(appliance(*args, "--progress=json", "--json"))
        check_progress([o for o in objects if o["type"] == "progress"], "verify")
    proc = appliance(
        "save", source, "--repo", str(repo), "--image", "again", "--progress=json", "--json"
    )
    check_progress([o for o in json_only(proc) if o["type"] == "progress"], "save")
    # --progress=json alone: stdout is still JSON lines only (no human sentence)
    proc = appliance("verify", "--repo", str(repo), "--image", "img", "--progress=json")
    for line in proc.stdout.splitlines():
        json.loads(line)


def test_json_alone_keeps_stdout_to_json(
    saved: tuple[Loops, str, Path, Path], tmp_path: Path
) -> None:
    """--json with the terminal progress: the progress goes to stderr, stdout is the result."""
    loops, source, repo, _ = saved
    target = loops.attach(sparse_file(tmp_path, "same.img", 500 * MiB))
    for args in (
        ["restore", "--repo", str(repo), "--image", "img", target, "--dry-run"],
        ["restore", "--repo", str(repo), "--image", "img", target, "--yes"],
        ["clone", source, target, "--yes"],
        ["verify", "--repo", str(repo), "--image", "img", "--against", target],
    ):
        [result] = json_only(appliance(*args, "--json"))
        assert result["command"] == args[0]
    loops.detach(target)

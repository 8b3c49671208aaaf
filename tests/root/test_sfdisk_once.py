"""A save reads the partition table with `sfdisk --json` once, while probing, and the
manifest records exactly what sfdisk prints for the source (an independent run compares)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from kit.cli import appliance
from kit.diskbuild import MiB, sparse_file
from kit.loops import Loops

from appliance.disk.probe import probe_disk

pytestmark = pytest.mark.root

TABLE = 'label: gpt\nsize=8MiB, name="esp"\nsize=40MiB, name="data"\n'


def _source(loops: Loops, tmp_path: Path) -> str:
    node = loops.attach(sparse_file(tmp_path, "source.img", 64 * MiB))
    subprocess.run(["sfdisk", "-q", node], input=TABLE, text=True, check=True)
    subprocess.run(["partx", "-u", node], check=False)
    subprocess.run(["mkfs.ext4", "-q", f"{node}p2"], check=True)
    return node


def _sfdisk_json(node: str) -> dict[str, object]:
    out = subprocess.run(["sfdisk", "--json", node], capture_output=True, text=True, check=True)
    table = json.loads(out.stdout)["partitiontable"]
    assert isinstance(table, dict)
    return table


def test_the_probe_keeps_what_sfdisk_prints(loops: Loops, tmp_path: Path) -> None:
    node = _source(loops, tmp_path)
    disk = probe_disk(node)
    assert disk.sfdisk == _sfdisk_json(node)
    assert [p["name"] for p in disk.sfdisk["partitions"]] == ["esp", "data"]


def test_a_save_runs_sfdisk_json_once(
    loops: Loops, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = _source(loops, tmp_path)
    real = shutil.which("sfdisk")
    assert real is not None
    log = tmp_path / "sfdisk.log"
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    wrapper = wrappers / "sfdisk"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrappers}{os.pathsep}{os.environ['PATH']}")
    repo = tmp_path / "repo"
    appliance("save", node, "--repo", str(repo), "--image", "once", "--create", "--no-check")
    calls = log.read_text().splitlines()
    assert calls.count(f"--json {node}") == 1, calls
    manifest = json.loads((repo / "images" / "once" / "manifest.json").read_text())
    assert manifest["table"]["sfdisk"] == _sfdisk_json(node)

"""A source disk with unreadable sectors: the save goes on, records them, and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kit.cli import appliance, result_json
from kit.diskbuild import build_gpt_disk
from kit.diskcompare import partition_nodes
from kit.dying import dying_disk
from kit.loops import Loops

from appliance.fs.usedmap import subtract, used_map

pytestmark = pytest.mark.root


def test_save_skips_and_records_unreadable_sectors(loops: Loops, tmp_path: Path) -> None:
    built = build_gpt_disk(loops, tmp_path / "source.img")
    ext4 = partition_nodes(built)[2]
    start = int(Path(f"/sys/class/block/{Path(ext4).name}/start").read_text()) * 512
    size = int(Path(f"/sys/class/block/{Path(ext4).name}/size").read_text()) * 512
    umap = used_map(ext4, "ext4", size)
    read = subtract(umap.ranges, umap.zeros)  # what the save reads (not its known zeros)
    loops.detach(built)
    offset = next(s for s, n in read if s >= 2 << 20 and n >= 8192)
    bad = (start + offset, 8192)  # inside the ext4 partition's used blocks, read by the save
    with dying_disk(loops, tmp_path / "source.img", tmp_path / "faulty", [bad]) as source:
        repo = tmp_path / "repo"
        proc = appliance(
            "save",
            source,
            "--repo",
            str(repo),
            "--image",
            "dying",
            "--json",
            "--create",
            check=False,
        )
        assert proc.returncode == 20, proc.stderr  # done, with warnings
        out = result_json(proc)
        assert any("unreadable" in w for w in out["warnings"]), out["warnings"]
        errors = [tuple(r) for r in out["read_errors"]]
        assert errors, "the unreadable sectors were not recorded"
        lo, hi = min(s for s, _ in errors), max(s + n for s, n in errors)
        assert bad[0] <= lo and hi <= bad[0] + bad[1]
        manifest = json.loads((repo / "images" / "dying" / "manifest.json").read_text())
        assert manifest["complete"] and manifest["stats"]["read_errors"]
        assert "unreadable" in (repo / "images" / "dying" / "log.txt").read_text()
        again = appliance("save", source, "--repo", str(repo), "--image", "again", check=False)
        assert again.returncode == 20, again.stderr
        warnings = [line for line in again.stderr.splitlines() if line.startswith("warning:")]
        assert any("unreadable" in line for line in warnings), again.stderr
        assert all(len(line) <= 80 for line in warnings), warnings

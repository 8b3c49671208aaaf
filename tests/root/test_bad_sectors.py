"""A source disk with unreadable sectors: the save and the clone go on, record them, and say
so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kit.cli import appliance, result_json
from kit.diskbuild import build_gpt_disk, sparse_file
from kit.diskcompare import partition_nodes, read_bytes
from kit.dying import dying_disk
from kit.interrupt import marked
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


def test_clone_copies_unreadable_sectors_as_zeros_and_says_so(loops: Loops, tmp_path: Path) -> None:
    """A clone of a dying disk goes on like a save: the unreadable sectors are copied as
    zeros, the clone ends "done, with warnings" (exit 20) naming them, and --json lists
    them; silently zeroed sectors would make a damaged copy look whole."""
    built = build_gpt_disk(loops, tmp_path / "source.img")
    ext4 = partition_nodes(built)[2]
    start = int(Path(f"/sys/class/block/{Path(ext4).name}/start").read_text()) * 512
    size = int(Path(f"/sys/class/block/{Path(ext4).name}/size").read_text()) * 512
    umap = used_map(ext4, "ext4", size)
    read = subtract(umap.ranges, umap.zeros)
    loops.detach(built)
    offset = next(s for s, n in read if s >= 2 << 20 and n >= 8192)
    bad = (start + offset, 8192)
    disk_size = (tmp_path / "source.img").stat().st_size
    target = loops.attach(sparse_file(tmp_path, "target.img", disk_size))
    with open(target, "r+b", buffering=0) as handle:  # old bytes where the bad sectors go
        handle.seek(bad[0])
        handle.write(b"\xee" * bad[1])
    with dying_disk(loops, tmp_path / "source.img", tmp_path / "faulty", [bad]) as source:
        proc = appliance("clone", source, target, "--yes", "--json", check=False)
        assert proc.returncode == 20, proc.stderr  # done, with warnings
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert any("unreadable" in w for w in out["warnings"]), out["warnings"]
        assert any("copied as zeros" in w for w in out["warnings"]), out["warnings"]
        errors = [tuple(r) for r in out["read_errors"]]
        assert errors, "the unreadable sectors were not recorded"
        lo, hi = min(s for s, _ in errors), max(s + n for s, n in errors)
        assert bad[0] <= lo and hi <= bad[0] + bad[1]
        said = appliance("clone", source, target, "--yes", check=False)
        assert said.returncode == 20, said.stderr
        warnings = [line for line in said.stderr.splitlines() if line.startswith("warning:")]
        assert any("unreadable" in line for line in warnings), said.stderr
        assert all(len(line) <= 80 for line in warnings), warnings
    assert read_bytes(target, lo, hi - lo) == bytes(hi - lo)
    assert not marked(target)  # a whole clone of what could be read: not incomplete

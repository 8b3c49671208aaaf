"""A restore that shrinks a partition reads it through a copy-on-write view of the image (the
resize tool, then the copy). A damaged chunk under that partition stops the restore with a
sentence naming the chunk (exit 9), never as a resize tool's garbled failure or as a fault
of the target disk, and never read as zeros into a disk that looks whole: found while
planning, nothing is written; found later, the target stays marked incomplete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zstandard
from kit.cli import appliance, file_digest
from kit.diskbuild import MiB, build_gpt_disk, sparse_file
from kit.interrupt import marked
from kit.loops import Loops

pytestmark = pytest.mark.root

SMALLER = 400 * MiB  # the partitions end at 447 MiB: the NTFS partition (3) shrinks


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("shrink")
    loops = Loops(folder)
    try:
        source = build_gpt_disk(loops, folder / "gpt.img")
        repo = folder / "repo"
        appliance("save", source, "--repo", str(repo), "--image", "gpt", "--create")
    finally:
        loops.cleanup()
    index = json.loads(
        zstandard.ZstdDecompressor().decompress((repo / "images/gpt/p3.idx").read_bytes())
    )
    return repo, [c for c in index["chunks"] if c]


@pytest.mark.parametrize("which", [0, 1, 2, -1])
def test_a_damaged_chunk_under_a_shrunk_partition_stops_the_restore(
    saved: tuple[Path, list[str]], loops: Loops, tmp_path: Path, which: int
) -> None:
    repo, chunks = saved
    name = chunks[which]
    path = repo / "chunks" / name[:2] / name[2:4] / name
    good = path.read_bytes()
    data = bytearray(good)
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    try:
        target_file = sparse_file(tmp_path, "target.img", SMALLER)
        dst = loops.attach(target_file)
        before = file_digest(target_file)
        proc = appliance("restore", "--repo", str(repo), "--image", "gpt", dst, "--yes",
                         "--progress", "none", check=False)  # fmt: skip
    finally:
        path.write_bytes(good)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 9, proc.stderr
    assert len(lines) == 1 and name in lines[0], proc.stderr
    if "incomplete" in lines[0]:
        assert marked(dst)
    else:  # found while planning the shrink: nothing was written
        loops.detach(dst)
        assert file_digest(target_file) == before

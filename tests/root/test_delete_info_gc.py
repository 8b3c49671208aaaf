"""delete, info and gc on a real repository: what a user expects of an image's lifecycle.

Two images of one disk share most chunks: deleting one frees only its own chunks, the other
still verifies; gc works around a damaged manifest by keeping what the image's readable
indexes name, and refuses (removing nothing) when nothing of the image can be read.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.cli import appliance, chunk_files, image_chunks, refused, result_json
from kit.diskbuild import build_gpt_disk, mutate_disk
from kit.loops import Loops

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def repo2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A repository with images "base" and "second" (the disk changed in between)."""
    folder = tmp_path_factory.mktemp("lifecycle")
    loops = Loops(folder)
    try:
        source = build_gpt_disk(loops, folder / "source.img")
        repo = folder / "repo"
        appliance("save", "--create", source, "--repo", str(repo), "--image", "base")
        mutate_disk(source)
        appliance("save", source, "--repo", str(repo), "--image", "second")
        yield repo
    finally:
        loops.cleanup()


@pytest.fixture
def repo(repo2: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "repo"
    shutil.copytree(repo2, dest)
    return dest


def own_chunks(repo: Path, image: str, other: str) -> set[str]:
    return image_chunks(repo, image) - image_chunks(repo, other)


def test_info_shows_disk_partitions_methods_and_log(repo: Path) -> None:
    text = appliance("info", "--repo", str(repo), "--image", "base").stdout
    assert all(len(line) <= 80 for line in text.splitlines()), text
    for words in (
        "Image base: complete",
        "Table: GPT",
        'partition 2, ext4 "root"',
        'ntfs "DATA"',
        "swap: recreated, not copied",
        "mapped: used blocks only",
        "Read errors: none",
        "Log (the last",
        "save complete",
    ):
        assert words in text, (words, text)
    data = result_json(appliance("info", "--repo", str(repo), "--image", "base", "--json"))
    assert data["command"] == "info" and data["complete"] is True
    regions = {r["name"]: r for r in data["regions"]}
    assert set(regions) == {"outside", "p1", "p2", "p3", "p4"}
    assert regions["p2"]["fstype"] == "ext4" and regions["p2"]["used_bytes"] > 0
    assert regions["p4"]["method"] == "swap" and all(r["index_ok"] for r in regions.values())
    assert "proof" in regions["p2"] and data["log_tail"]


def test_info_names_a_damaged_index(repo: Path) -> None:
    idx = repo / "images" / "base" / "p2.idx"
    idx.write_bytes(idx.read_bytes()[:-3])
    text = appliance("info", "--repo", str(repo), "--image", "base").stdout
    assert "DAMAGED (not restorable)" in text
    assert "the index of partition 2 (ext4, root) does not match its hash" in text
    refused(
        appliance("info", "--repo", str(repo), "--image", "nope", check=False),
        8,
        "no image named nope",
    )


def test_delete_asks_then_frees_only_its_own_chunks(repo: Path) -> None:
    refused(
        appliance("delete", "--repo", str(repo), "--image", "second", check=False), 5, "add --yes"
    )
    assert (repo / "images" / "second" / "manifest.json").exists()
    own = own_chunks(repo, "second", "base")
    assert own, "the mutation changed no chunk"
    size = sum((repo / "chunks" / c[:2] / c[2:4] / c).stat().st_size for c in own)
    before = chunk_files(repo)
    out = appliance("delete", "--repo", str(repo), "--image", "second", "--yes").stdout
    assert "Deleted image second." in out and "would free" in out
    assert not (repo / "images" / "second").exists()
    assert chunk_files(repo) == before, "delete without --gc removed chunks"
    gc = result_json(appliance("gc", "--repo", str(repo), "--json"))
    assert gc["removed_chunks"] == len(own) and gc["removed_bytes"] == size
    assert chunk_files(repo) == image_chunks(repo, "base")
    appliance("verify", "--repo", str(repo), "--image", "base")
    images = result_json(appliance("images", "--repo", str(repo), "--json"))["images"]
    assert [i["name"] for i in images] == ["base"]


def test_delete_with_gc_and_json(repo: Path) -> None:
    own = own_chunks(repo, "base", "second")
    out = result_json(
        appliance("delete", "--repo", str(repo), "--image", "base", "--yes", "--gc", "--json")
    )
    assert out["deleted"] and out["gc_ran"] and out["gc_chunks"] == len(own)
    assert chunk_files(repo) == image_chunks(repo, "second")
    appliance("verify", "--repo", str(repo), "--image", "second")
    refused(
        appliance("delete", "--repo", str(repo), "--image", "base", "--yes", check=False),
        8,
        "no image named base",
    )


def test_gc_keeps_what_a_damaged_manifest_image_may_use(repo: Path) -> None:
    (repo / "images" / "second" / "manifest.json").write_bytes(b"\xff\xfe{ not json")
    keep = image_chunks(repo, "base") | image_chunks(repo, "second")
    (repo / "chunks" / "00" / "00").mkdir(parents=True, exist_ok=True)
    (repo / "chunks" / "00" / "00" / ("0" * 64)).write_bytes(b"junk")
    proc = appliance("gc", "--repo", str(repo))
    assert "Removed 1 unused chunks" in proc.stdout
    assert (
        "Image second is damaged: its manifest is damaged; the chunks named by its 5 "
        "readable indexes were kept." in proc.stdout
    )
    assert chunk_files(repo) == keep
    data = result_json(appliance("gc", "--repo", str(repo), "--json"))
    assert data["skipped"][0]["image"] == "second"
    (repo / "images" / "second" / "manifest.json").write_text("{ not json")
    listing = appliance("images", "--repo", str(repo)).stdout
    assert all(len(line) <= 80 for line in listing.splitlines()), listing
    assert "DAMAGED" in listing and "proven" in listing  # base is whole and proven
    appliance("verify", "--repo", str(repo), "--image", "base")


def test_gc_refuses_when_nothing_of_an_image_can_be_read(repo: Path) -> None:
    folder = repo / "images" / "second"
    (folder / "manifest.json").write_text(json.dumps({"format": "other"}))
    for idx in folder.glob("*.idx"):
        idx.write_bytes(b"garbage")
    before = chunk_files(repo)
    sentence = refused(
        appliance("gc", "--repo", str(repo), check=False),
        8,
        "gc removed nothing: the manifest of image second cannot be read",
    )
    assert "appliance delete --repo" in sentence and "--image second" in sentence
    assert chunk_files(repo) == before
    # the way out the sentence names: delete it, then gc runs
    out = appliance("delete", "--repo", str(repo), "--image", "second", "--yes", "--gc").stdout
    assert "gc removed" in out
    assert chunk_files(repo) == image_chunks(repo, "base")
    appliance("verify", "--repo", str(repo), "--image", "base")


def test_delete_waits_for_no_writer(repo: Path) -> None:
    import os
    import socket

    start = Path(f"/proc/{os.getpid()}/stat").read_text()
    start = start[start.rfind(")") + 2 :].split()[19]
    (repo / "lock").write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "start": start,
                "command": "save sdz",
                "since": "now",
            }
        )
    )
    refused(
        appliance("delete", "--repo", str(repo), "--image", "second", "--yes", check=False),
        7,
        "in use",
    )
    assert (repo / "images" / "second" / "manifest.json").exists()

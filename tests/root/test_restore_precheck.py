"""A restore checks the image before its first write: a damaged image erases nothing."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from kit.cli import appliance, file_digest, refused
from kit.diskbuild import GPT_DISK_SIZE, sparse_file
from kit.loops import Loops
from kit.saved import saved_gpt_disk

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Loops, Path]]:
    with saved_gpt_disk(tmp_path_factory.mktemp("precheck")) as saved:
        saved.loops.detach(saved.source)
        yield saved.loops, saved.repo


@pytest.fixture
def setup(saved: tuple[Loops, Path], tmp_path: Path) -> tuple[Path, str, Path]:
    """A copy of the repository to damage, and a blank target disk of the same size."""
    loops, repo = saved
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    path = sparse_file(tmp_path, "target.img", GPT_DISK_SIZE)
    with open(path, "r+b") as handle:  # bytes a write would change
        handle.write(b"TARGET" * 100_000)
    return copy, loops.attach(path), path


def region_chunks(repo: Path, region: str) -> list[str]:
    blob = (repo / "images" / "base" / f"{region}.idx").read_bytes()
    data = json.loads(zstandard.ZstdDecompressor().decompress(blob))
    return [c for c in data["chunks"] if c]


def chunk_path(repo: Path, name: str) -> Path:
    return repo / "chunks" / name[:2] / name[2:4] / name


def restore_refused(repo: Path, node: str, path: Path, words: str, *extra: str) -> str:
    before = file_digest(path)
    proc = appliance(
        "restore", "--repo", str(repo), "--image", "base", node, "--yes", *extra, check=False
    )
    sentence = refused(proc, 9, words)
    assert file_digest(path) == before, "a refused restore wrote to the target"
    return sentence


def only_in(repo: Path, region: str) -> str:
    """A chunk of `region` that no other region of the image uses."""
    others: set[str] = set()
    for idx in (repo / "images" / "base").glob("*.idx"):
        if idx.stem != region:
            others.update(region_chunks(repo, idx.stem))
    return next(c for c in region_chunks(repo, region) if c not in others)


def test_missing_chunk_is_refused_before_writing(setup: tuple[Path, str, Path]) -> None:
    repo, node, path = setup
    chunk_path(repo, only_in(repo, "p2")).unlink()
    sentence = restore_refused(repo, node, path, "missing or truncated")
    assert "partition 2 (ext4" in sentence and "nothing was written" in sentence


def test_truncated_chunk_is_refused_before_writing(setup: tuple[Path, str, Path]) -> None:
    repo, node, path = setup
    victim = chunk_path(repo, only_in(repo, "p3"))
    victim.write_bytes(victim.read_bytes()[:-100])
    sentence = restore_refused(repo, node, path, "missing or truncated")
    assert "partition 3 (ntfs" in sentence


def test_edited_manifest_is_refused_before_writing(setup: tuple[Path, str, Path]) -> None:
    repo, node, path = setup
    manifest = repo / "images" / "base" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["regions"][2]["used_bytes"] += 4096
    manifest.write_text(json.dumps(data, indent=2))
    restore_refused(repo, node, path, "does not match its own hash")


def test_table_that_differs_from_the_saved_bytes_is_refused(setup: tuple[Path, str, Path]) -> None:
    """The manifest's own hash is right, but its table is not the one the image holds."""
    repo, node, path = setup
    manifest = repo / "images" / "base" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["table"]["sfdisk"]["partitions"][1]["size"] -= 2048
    # re-hash it the way the appliance does, so that only the table check can see it
    import blake3

    rest = {k: v for k, v in data.items() if k != "manifest_hash"}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    data["manifest_hash"] = blake3.blake3(canonical.encode()).hexdigest()
    manifest.write_text(json.dumps(data, indent=2))
    sentence = restore_refused(repo, node, path, "partition table saved")
    assert "differs from the one its manifest records" in sentence


def test_verify_first_finds_a_flipped_byte_before_writing(setup: tuple[Path, str, Path]) -> None:
    """Same length, wrong content: only a re-hash sees it, and --verify-first does first."""
    repo, node, path = setup
    victim = chunk_path(repo, only_in(repo, "p2"))
    blob = bytearray(victim.read_bytes())
    blob[-10] ^= 0xFF
    victim.write_bytes(bytes(blob))
    sentence = restore_refused(repo, node, path, "partition 2 (ext4", "--verify-first")
    assert "damaged" in sentence


def test_verify_first_then_restore(setup: tuple[Path, str, Path]) -> None:
    repo, node, path = setup
    proc = appliance(
        "restore",
        "--repo",
        str(repo),
        "--image",
        "base",
        node,
        "--yes",
        "--verify-first",
        "--progress",
        "json",
        "--json",
    )
    phases = [
        json.loads(line)["phase"]
        for line in proc.stdout.splitlines()
        if '"type": "progress"' in line
    ]
    assert "check" in phases and "restore" in phases
    assert phases.index("check") < phases.index("restore")
    assert "verify" not in phases and phases.count("done") <= 1


def verified_of(repo: Path) -> str | None:
    out = json.loads(appliance("images", "--repo", str(repo), "--json").stdout)
    [image] = [i for i in out["images"] if i["name"] == "base"]
    return image["verified"]  # type: ignore[no-any-return]


def test_a_verify_is_remembered(setup: tuple[Path, str, Path]) -> None:
    """`images` and `info` say whether an image was ever verified whole (the interface
    re-hashes an image that never was before it restores it)."""
    repo, node, path = setup
    assert verified_of(repo) is None
    assert "Never verified" in appliance("info", "--repo", str(repo), "--image", "base").stdout
    appliance("verify", "--repo", str(repo), "--image", "base")
    when = verified_of(repo)
    assert when is not None and when[:4].isdigit()
    assert f"Verified (every chunk re-hashed): {when}" in " ".join(
        appliance("info", "--repo", str(repo), "--image", "base").stdout.split()
    )
    # a damaged chunk found by a later verify: the record is not renewed
    name = region_chunks(repo, "p2")[0]
    blob = bytearray(chunk_path(repo, name).read_bytes())
    blob[-1] ^= 0xFF
    chunk_path(repo, name).write_bytes(bytes(blob))
    (repo / "images" / "base" / "verified.json").unlink()
    proc = appliance("verify", "--repo", str(repo), "--image", "base", check=False)
    assert proc.returncode == 9
    assert verified_of(repo) is None


def test_damaged_table_chunk_is_refused_before_writing(setup: tuple[Path, str, Path]) -> None:
    """The table check reads the saved table area through the image source: a chunk of it
    that does not match its name stops the restore before its first write."""
    repo, node, path = setup
    name = region_chunks(repo, "outside")[0]
    blob = bytearray(chunk_path(repo, name).read_bytes())
    blob[-1] ^= 0xFF
    chunk_path(repo, name).write_bytes(bytes(blob))
    sentence = restore_refused(repo, node, path, "Nothing was written")
    assert "table and boot area" in sentence

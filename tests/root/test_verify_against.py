"""verify --against says what it compared and how: byte for byte where the layout is the
image's, by files (both sides read-only) for a partition whose filesystem was resized, and
"not compared" with the reason otherwise; a changed file in a resized partition is caught."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.cli import appliance, file_digest, refused, result_json
from kit.diskbuild import (
    GPT_DISK_SIZE,
    MBR_DISK_SIZE,
    MiB,
    build_gpt_disk,
    build_mbr_disk,
    sparse_file,
)
from kit.diskcompare import mounted, partition_nodes
from kit.loops import Loops

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Loops, str, Path]]:
    folder = tmp_path_factory.mktemp("verify-against")
    loops = Loops(folder)
    try:
        source = build_gpt_disk(loops, folder / "source.img")
        repo = folder / "repo"
        appliance("save", "--create", source, "--repo", str(repo), "--image", "img")
        yield loops, source, repo
    finally:
        loops.cleanup()


def restored(
    saved: tuple[Loops, str, Path], tmp_path: Path, size: int, *extra: str
) -> tuple[str, Path]:
    loops, _, repo = saved
    path = sparse_file(tmp_path, "target.img", size)
    target = loops.attach(path)
    appliance("restore", "--repo", str(repo), "--image", "img", target, "--yes", *extra)
    return target, path


def verify(repo: Path, target: str, *extra: str, check: bool = True) -> object:
    return appliance(
        "verify", "--repo", str(repo), "--image", "img", "--against", target, *extra, check=check
    )


@pytest.mark.parametrize(
    "size, grow, resized",
    [
        (400 * MiB, None, "p3"),  # NTFS shrinks
        (400 * MiB, "2", "p2"),  # ext4 shrinks
        (GPT_DISK_SIZE * 3 // 2, None, "p3"),  # NTFS grows
    ],
    ids=["ntfs-shrunk", "ext4-shrunk", "ntfs-grown"],
)
def test_resized_partition_is_compared_by_files(
    saved: tuple[Loops, str, Path], tmp_path: Path, size: int, grow: str | None, resized: str
) -> None:
    loops, _, repo = saved
    target, path = restored(saved, tmp_path, size, *(["--grow", grow] if grow else []))
    before = file_digest(path)
    data = result_json(verify(repo, target, "--json"))
    assert file_digest(path) == before, "verify wrote to the disk"
    how = {c["region"]: c["how"] for c in data["checks"]}
    assert how[resized] == "files"
    assert how["p4"] == "nothing" and how["outside"] == "none"
    assert {r for r, h in how.items() if h == "bytes"} == {"p1", "p2", "p3"} - {resized}
    assert data["compared_all"] is False and len(data["skipped"]) == 1
    text = verify(repo, target).stdout
    assert "in every part that was compared; not everything was" in " ".join(text.split())
    assert "compared by files (resized)" in text and "compared byte for byte" in text
    assert "Verified" not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    loops.detach(target)


def test_a_changed_file_in_a_resized_partition_is_found(
    saved: tuple[Loops, str, Path], tmp_path: Path
) -> None:
    loops, _, repo = saved
    target, path = restored(saved, tmp_path, 400 * MiB)
    with mounted(partition_nodes(target)[3], "ntfs", readonly=False) as root:
        victim = sorted(p for p in root.rglob("*") if p.is_file() and p.stat().st_size)[0]
        data = bytearray(victim.read_bytes())
        data[0] ^= 0xFF  # same size, other content
        victim.write_bytes(bytes(data))
        name = str(victim.relative_to(root))
    before = file_digest(path)
    sentence = refused(
        verify(repo, target, check=False),
        10,
        "differs from image img in partition 3 (ntfs, DATA), compared by files",
    )
    assert f"{name}: its content differs" in sentence
    assert file_digest(path) == before, "verify wrote to the disk"
    loops.detach(target)


def test_same_size_disk_is_compared_byte_for_byte(
    saved: tuple[Loops, str, Path], tmp_path: Path
) -> None:
    loops, _, repo = saved
    target, _ = restored(saved, tmp_path, GPT_DISK_SIZE)
    data = result_json(verify(repo, target, "--json"))
    assert data["compared_all"] is True and data["skipped"] == []
    assert {c["region"]: c["how"] for c in data["checks"]} == {
        "outside": "bytes",
        "p1": "bytes",
        "p2": "bytes",
        "p3": "bytes",
        "p4": "nothing",
    }
    text = verify(repo, target).stdout
    assert text.startswith(f"{target} holds the same data as image img (")
    loops.detach(target)


def test_grown_btrfs_on_an_mbr_disk_is_compared_by_files(tmp_path: Path) -> None:
    """btrfs (mounted with nologreplay) and xfs (untouched, byte for byte) on logicals."""
    loops = Loops(tmp_path)
    try:
        source = build_mbr_disk(loops, tmp_path / "mbr.img")
        repo = tmp_path / "repo"
        appliance("save", "--create", source, "--repo", str(repo), "--image", "img")
        path = sparse_file(tmp_path, "target.img", MBR_DISK_SIZE * 3 // 2)
        target = loops.attach(path)
        appliance("restore", "--repo", str(repo), "--image", "img", target, "--yes")
        before = file_digest(path)
        data = result_json(verify(repo, target, "--json"))
        how = {c["region"]: c["how"] for c in data["checks"]}
        assert how["p6"] == "files" and how["p5"] == "bytes" and how["p1"] == "bytes"
        assert file_digest(path) == before, "verify wrote to the disk"
    finally:
        loops.cleanup()

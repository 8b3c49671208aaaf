"""A save that tells the truth: where it writes, what it copied whole, what it could not read.

Each case on real loop disks: the sentence or the warnings, the exit code, and (for a
refusal) nothing written.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.cli import appliance, refused, result_json
from kit.diskcompare import mounted, partition_nodes
from kit.dying import dying_disk
from kit.loops import Loops
from kit.ntfs import set_dirty
from kit.saved import saved_gpt_disk

pytestmark = pytest.mark.root
WARNINGS_EXIT = 20


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Loops, str, Path, Path]]:
    """A GPT disk (FAT, ext4, NTFS, swap) and a repository holding its image "base"."""
    with saved_gpt_disk(tmp_path_factory.mktemp("truth")) as saved:
        yield saved.loops, saved.source, saved.repo, saved.folder


def warnings_of(proc: subprocess.CompletedProcess[str]) -> list[str]:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert all(len(line) <= 80 for line in lines), lines
    return lines


def manifest_of(repo: Path, image: str) -> dict[str, object]:
    data = json.loads((repo / "images" / image / "manifest.json").read_text())
    assert isinstance(data, dict)
    return data


# -- where a save may write -------------------------------------------------------------
def test_a_missing_repository_is_not_created_without_create(
    built: tuple[Loops, str, Path, Path], tmp_path: Path
) -> None:
    loops, source, _, _ = built
    where = tmp_path / "nowhere" / "repo"
    proc = appliance("save", source, "--repo", str(where), "--image", "x", check=False)
    refused(proc, 6, f"There is no repository at {where}; add --create to make one.")
    assert not where.exists() and not where.parent.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = appliance("save", source, "--repo", str(empty), "--image", "x", check=False)
    refused(proc, 6, "add --create")
    assert list(empty.iterdir()) == []


def test_a_repository_in_ram_is_refused_unless_allowed(
    built: tuple[Loops, str, Path, Path],
) -> None:
    loops, source, _, _ = built
    ram = loops.mountpoint("ram")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(ram)], check=True)
    try:
        proc = appliance(
            "save", source, "--repo", str(ram / "repo"), "--image", "x", "--create", check=False
        )
        refused(proc, 6, "lost at power off")
        assert list(ram.iterdir()) == []
        # allowed, it passes that rule and meets the next one: 2 MiB cannot hold the image
        proc = appliance(
            "save",
            source,
            "--repo",
            str(ram / "repo"),
            "--image",
            "x",
            "--create",
            "--allow-ram",
            check=False,
        )
        refused(proc, 6, "free some space")
        assert list(ram.iterdir()) == []
    finally:
        subprocess.run(["umount", str(ram)], check=False)


# -- mounted sources --------------------------------------------------------------------
def test_a_read_only_mounted_filesystem_is_saved_with_its_map(
    built: tuple[Loops, str, Path, Path], tmp_path: Path
) -> None:
    loops, source, repo, _ = built
    ext4 = partition_nodes(source)[2]
    repo = tmp_path / "repo"
    with mounted(ext4, "ext4", readonly=True, mountpoint=loops.mountpoint("ro")):
        proc = appliance("save", source, "--repo", str(repo), "--image", "ro", "--create", "--json")
    assert warnings_of(proc) == [] and result_json(proc)["warnings"] == []
    regions = {r["name"]: r for r in manifest_of(repo, "ro")["regions"]}  # type: ignore[union-attr]
    assert regions["p2"]["method"] == "partclone"
    assert regions["p2"]["used_bytes"] < regions["p2"]["size"] // 2
    with mounted(ext4, "ext4", readonly=False, mountpoint=loops.mountpoint("rw")):
        proc = appliance("save", source, "--repo", str(repo), "--image", "rw", check=False)
        refused(proc, 5, "mounted read-write")


def test_a_disk_whose_partitions_the_kernel_was_not_told_is_saved_mapped(
    built: tuple[Loops, str, Path, Path], tmp_path: Path
) -> None:
    """A loop device attached without a partition scan (or reattached to another image)
    has no kernel partitions on this kernel: the save tells the kernel the table itself and
    maps and proves each filesystem, instead of copying every partition whole as
    unformatted."""
    _, source, _, _ = built
    subprocess.run(["partx", "-d", source], check=False, capture_output=True)
    repo = tmp_path / "repo"
    proc = appliance("save", source, "--repo", str(repo), "--image", "bare", "--create", "--json")
    assert warnings_of(proc) == [] and result_json(proc)["warnings"] == []
    regions = {r["name"]: r for r in manifest_of(repo, "bare")["regions"]}  # type: ignore[union-attr]
    assert regions["p2"]["fstype"] == "ext4" and regions["p2"]["method"] == "partclone"
    assert regions["p2"]["used_bytes"] < regions["p2"]["size"] // 2
    assert regions["p3"]["fstype"] == "ntfs"
    assert set(result_json(proc)["proofs"]) >= {"p1", "p2", "p3"}
    assert Path(f"{source}p2").exists()


# -- copied whole -----------------------------------------------------------------------
def test_a_dirty_ntfs_is_copied_whole_and_said(
    built: tuple[Loops, str, Path, Path], tmp_path: Path
) -> None:
    loops, _, _, folder = built
    shutil.copyfile(folder / "source.img", tmp_path / "dirty.img")
    source = loops.attach(tmp_path / "dirty.img")
    set_dirty(partition_nodes(source)[3])
    repo = tmp_path / "repo"
    proc = appliance(
        "save", source, "--repo", str(repo), "--image", "dirty", "--create", "--json", check=False
    )
    assert proc.returncode == WARNINGS_EXIT, proc.stderr
    lines = warnings_of(proc)
    assert len(lines) == 1, lines
    # the cost: the partition's size less what NTFS says it uses (ntfscluster -f -i)
    assert re.fullmatch(
        r"warning: partition 3 \(ntfs\) copied whole \(dirty NTFS\), "
        r"1\d\d\.\d MB extra",
        lines[0],
    ), lines
    assert result_json(proc)["warnings"] == [line.removeprefix("warning: ") for line in lines]
    assert manifest_of(repo, "dirty")["complete"] is True


# -- deduplication reads back what it reuses ---------------------------------------------
def test_a_damaged_stored_chunk_is_not_reused_but_rewritten(
    built: tuple[Loops, str, Path, Path], tmp_path: Path
) -> None:
    loops, source, repo, _ = built
    repo = Path(shutil.copytree(repo, tmp_path / "repo"))
    chunks = sorted((repo / "chunks").glob("*/*/*"), key=lambda p: p.stat().st_size)
    victim = chunks[-1]  # the largest: surely data, same length after the damage
    blob = bytearray(victim.read_bytes())
    blob[len(blob) // 2] ^= 0x55
    victim.write_bytes(bytes(blob))
    proc = appliance(
        "save", source, "--repo", str(repo), "--image", "second", "--json", check=False
    )
    assert proc.returncode == WARNINGS_EXIT, proc.stderr
    assert warnings_of(proc) == ["warning: 1 damaged chunk of the repository was rewritten"]
    out = result_json(proc)
    assert out["repaired_chunks"] == 1 and out["new_chunks"] >= 1
    assert victim.read_bytes() != bytes(blob)
    # the repair serves the new image and the old one
    appliance("verify", "--repo", str(repo), "--image", "second")
    appliance("verify", "--repo", str(repo), "--image", "base")


# -- damaged manifests ------------------------------------------------------------------
def test_damaged_manifests_are_listed_and_the_others_stay_usable(
    built: tuple[Loops, str, Path, Path], tmp_path: Path
) -> None:
    loops, source, repo, _ = built
    repo = Path(shutil.copytree(repo, tmp_path / "repo"))
    base = repo / "images" / "base"
    text = (base / "manifest.json").read_bytes()
    for name, damage in (
        ("not-utf8", b"\xff\xfe" + text[2:]),
        ("truncated", text[:200]),
        ("edited", text.replace(b'"complete": true', b'"complete": false')),
    ):
        shutil.copytree(base, repo / "images" / name)
        (repo / "images" / name / "manifest.json").write_bytes(damage)
    out = result_json(appliance("images", "--repo", str(repo), "--json"))
    listed = {i["name"]: i for i in out["images"]}
    assert set(listed) == {"base", "not-utf8", "truncated", "edited"}
    assert listed["base"]["restorable"] and not listed["base"]["problem"]
    for name in ("not-utf8", "truncated", "edited"):
        assert not listed[name]["restorable"], name
        assert "damaged" in listed[name]["problem"] or "hash" in listed[name]["problem"]
        assert "\n" not in listed[name]["problem"]
    assert "does not match its own hash" in listed["edited"]["problem"]
    text_out = appliance("images", "--repo", str(repo)).stdout
    assert "not-utf8" in text_out and "base" in text_out
    refused(
        appliance("verify", "--repo", str(repo), "--image", "not-utf8", check=False),
        8,
        "is damaged and cannot be read",
    )
    appliance("verify", "--repo", str(repo), "--image", "base")


# -- unreadable sectors -----------------------------------------------------------------
def ext4_facts(part: str) -> dict[str, int]:
    """Block size, where group 0's block bitmap is, and one block of /readme.txt."""
    head = subprocess.run(["dumpe2fs", part], capture_output=True, text=True, check=True).stdout
    facts = {"block": int(head.split("Block size:")[1].split()[0])}
    facts["bitmap"] = int(head.split("Block bitmap at ")[1].split()[0])
    blocks = subprocess.run(
        ["debugfs", "-R", "blocks /readme.txt", part], capture_output=True, text=True, check=True
    ).stdout.split()
    facts["file"] = int(blocks[0])
    return facts


def test_unreadable_metadata_copies_the_filesystem_whole_and_goes_on(
    built: tuple[Loops, str, Path, Path], tmp_path: Path
) -> None:
    loops, source, _, folder = built
    ext4 = partition_nodes(source)[2]
    start = int(Path(f"/sys/class/block/{Path(ext4).name}/start").read_text()) * 512
    facts = ext4_facts(ext4)
    bitmap = (start + facts["bitmap"] * facts["block"], facts["block"])
    data = (start + facts["file"] * facts["block"], facts["block"])
    repo = tmp_path / "repo"
    with dying_disk(loops, folder / "source.img", tmp_path / "faulty", [bitmap, data]) as node:
        proc = appliance(
            "save", node, "--repo", str(repo), "--image", "dying", "--create", "--json", check=False
        )
    assert proc.returncode == WARNINGS_EXIT, proc.stderr
    lines = warnings_of(proc)
    assert any(
        "partition 2 (ext4) copied whole (map unreadable), " in w and "MB extra" in w for w in lines
    ), lines
    assert "warning: partition 2: unreadable sectors hit /readme.txt" in lines
    assert "warning: partition 2: unreadable sectors hit filesystem metadata" in lines
    assert "unreadable areas were saved as zeros" in " ".join(lines)
    manifest = manifest_of(repo, "dying")
    assert manifest["complete"] is True
    regions = {r["name"]: r for r in manifest["regions"]}  # type: ignore[union-attr]
    assert regions["p2"]["method"] == "raw"
    errors = [tuple(r) for r in manifest["stats"]["read_errors"]]  # type: ignore[index]
    # each recorded area (whole sectors of the read) holds one of the bad ranges
    assert len(errors) == 2 and all(
        any(e <= s and s + n <= e + m for s, n in (bitmap, data)) for e, m in errors
    ), errors
    log = (repo / "images" / "dying" / "log.txt").read_text()
    assert "/readme.txt" in log
    assert "warning: partition 2 (ext4) copied whole (map unreadable)" in log


def ntfs_file_offset(part: str, path: str) -> int:
    """Where the first cluster of a (non-resident) file lies on the partition."""
    info = subprocess.run(
        ["ntfsinfo", "-f", "-v", "-F", path, part], capture_output=True, text=True, check=True
    ).stdout
    lcn = int(info.split("Runlist:")[1].splitlines()[1].split()[1], 16)
    return lcn * 4096  # mkfs.ntfs' default cluster for this size


def test_unreadable_sectors_in_an_ntfs_file_are_named(
    built: tuple[Loops, str, Path, Path], tmp_path: Path
) -> None:
    loops, source, _, folder = built
    ntfs = partition_nodes(source)[3]
    start = int(Path(f"/sys/class/block/{Path(ntfs).name}/start").read_text()) * 512
    bad = (start + ntfs_file_offset(ntfs, "/readme.txt"), 4096)
    repo = tmp_path / "repo"
    with dying_disk(loops, folder / "source.img", tmp_path / "faulty", [bad]) as node:
        proc = appliance(
            "save", node, "--repo", str(repo), "--image", "ntfs", "--create", "--json", check=False
        )
    assert proc.returncode == WARNINGS_EXIT, proc.stderr
    lines = warnings_of(proc)
    assert "warning: partition 3: unreadable sectors hit /readme.txt" in lines, lines
    assert not any("copied whole" in line for line in lines), lines  # its map was readable
    regions = {r["name"]: r for r in manifest_of(repo, "ntfs")["regions"]}  # type: ignore[union-attr]
    assert regions["p3"]["method"] == "partclone"


def test_the_log_starts_with_the_save(built: tuple[Loops, str, Path, Path]) -> None:
    """log.txt says when the save started (its first line was lost before the image folder
    existed), and ends with its completion."""
    _, _, repo, _ = built
    lines = (repo / "images" / "base" / "log.txt").read_text().splitlines()
    assert "save of" in lines[0] and "started" in lines[0], lines[:2]
    assert any("save complete" in line for line in lines[1:])

"""`appliance extract` end to end: a real disk saved by the real appliance, its partitions
mounted read-only through the image's view (appliance.jobs.imagemount), folders copied onto
another real filesystem and compared with the source disk's own files (contents, dates,
modes, owners); a damaged chunk under one file fails that file, with a warning naming it, and
the others are copied."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit.cli import appliance, result_json
from kit.diskbuild import build_gpt_disk
from kit.diskcompare import fiemap_windows, mounted, partition_nodes
from kit.filetrees import MiB, digests, make_filesystem
from kit.loops import Loops

from appliance.repo.image import load_image
from appliance.repo.repository import Repository

pytestmark = pytest.mark.root

WINDOW = 4 * MiB


@dataclass(frozen=True)
class Setup:
    repo: Path
    source: str  # the saved disk's loop node
    dest: Path  # a folder on another filesystem (ext4 on its own loop device)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("extract")
    loops = Loops(folder)
    try:
        source = build_gpt_disk(loops, folder / "gpt.img")
        appliance("save", source, "--repo", str(folder / "repo"), "--image", "gpt", "--create")
        node = make_filesystem(loops, folder, "dest.img", "ext4", 128 * MiB)
        with mounted(node, "ext4", readonly=False, mountpoint=loops.mountpoint("dest")) as dest:
            yield Setup(folder / "repo", source, dest)
    finally:
        loops.cleanup()


def owner_and_mode(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


@pytest.mark.parametrize(("number", "fstype"), [(2, "ext4"), (3, "ntfs")])
def test_a_folder_comes_back_as_it_is_on_the_source(setup: Setup, number: int, fstype: str) -> None:
    out = setup.dest / f"p{number}"
    picks = ["/data", "/readme.txt"] + (["/secret-0600", "/link-relative"] if number == 2 else [])
    proc = appliance(
        "extract", "--repo", str(setup.repo), "--image", "gpt", "--partition", str(number),
        *picks, "--to", str(out), "--json", "--progress", "none",
    )  # fmt: skip
    result = result_json(proc)
    assert (result["ok"], result["failed"], result["skipped"]) == (True, [], [])
    assert proc.returncode == 0
    # "done" means on the destination's disk (it is unplugged next): the file's bytes are
    # in the disk's backing file already, read past the mounted filesystem by debugfs
    on_disk = subprocess.run(
        ["debugfs", "-R", f"cat /p{number}/readme.txt", str(setup.repo.parent / "dest.img")],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert on_disk == (out / "readme.txt").read_bytes() != b""
    part = partition_nodes(setup.source)[number]
    with mounted(part, fstype) as root:
        assert digests(out / "data") == digests(root / "data")  # bytes and dates
        assert (out / "readme.txt").read_bytes() == (root / "readme.txt").read_bytes()
        if number == 2:
            assert owner_and_mode(out / "secret-0600") == (1000, 1000, 0o600)
            assert os.readlink(out / "link-relative") == "readme.txt"
            assert owner_and_mode(out / "data") == owner_and_mode(root / "data")
    assert result["bytes"] == result["total_bytes"] > MiB


def test_a_repository_named_by_a_relative_path(setup: Setup) -> None:
    """`--repo repo` from the repository's parent folder: the image's view (a process whose
    libfuse changes its folder to "/") still finds the chunks."""
    out = setup.dest / "relative"
    proc = appliance(
        "extract", "--repo", setup.repo.name, "--image", "gpt", "--partition", "2", "/data",
        "--to", str(out), "--json", "--progress", "none", cwd=setup.repo.parent,
    )  # fmt: skip
    assert result_json(proc)["ok"] is True
    part = partition_nodes(setup.source)[2]
    with mounted(part, "ext4") as root:
        assert digests(out / "data") == digests(root / "data")


def test_a_damaged_chunk_fails_its_file_and_the_others_are_copied(
    setup: Setup, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["cp", "-a", str(setup.repo), str(repo)], check=True)
    part = partition_nodes(setup.source)[2]
    with mounted(part, "ext4") as root:
        expected = digests(root / "data")
        windows = {rel: fiemap_windows(root / "data" / rel, WINDOW) for rel in expected}
    damaged = min(windows["random-1.bin"])
    chunk = load_image(Repository.open(repo), "gpt").indexes["p2"].chunks[damaged]
    assert chunk is not None
    path = repo / "chunks" / chunk[:2] / chunk[2:4] / chunk
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 0xFF
    path.write_bytes(bytes(blob))

    out = setup.dest / "damaged"
    proc = appliance(
        "extract", "--repo", str(repo), "--image", "gpt", "--partition", "2", "/data",
        "--to", str(out), "--progress", "none", check=False,
    )  # fmt: skip
    assert proc.returncode == 20, proc.stderr
    touching = sorted(rel for rel, where in windows.items() if damaged in where)
    assert "random-1.bin" in touching
    warned = sorted(
        line.split("FAILED: /data/")[1].split(":")[0]
        for line in proc.stderr.splitlines()
        if "FAILED: /data/" in line
    )
    assert warned == touching
    got = digests(out / "data")
    assert set(got) == set(expected) - set(touching)  # the failed ones left no partial file
    assert all(got[rel] == expected[rel] for rel in got)

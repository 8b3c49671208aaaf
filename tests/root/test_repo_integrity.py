"""Deduplication, damage and interruption: the repository keeps its promises."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.cli import (
    appliance,
    chunk_files,
    file_digest,
    image_chunks,
    refused,
    result_json,
)
from kit.diskbuild import GPT_DISK_SIZE, mutate_disk, sparse_file
from kit.diskcompare import assert_equivalent
from kit.loops import Loops
from kit.saved import saved_gpt_disk

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def gpt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Loops, str, Path, Path]]:
    with saved_gpt_disk(tmp_path_factory.mktemp("integrity")) as saved:
        yield saved.loops, saved.source, saved.repo, saved.folder


def copy_repo(repo: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "repo-copy"
    shutil.copytree(repo, dest)
    return dest


def test_second_save_stores_only_changed_chunks(
    gpt: tuple[Loops, str, Path, Path], tmp_path: Path
) -> None:
    loops, source, repo, folder = gpt
    repo = copy_repo(repo, tmp_path)
    clone_file = tmp_path / "changed.img"
    shutil.copyfile(folder / "source.img", clone_file)
    changed = loops.attach(clone_file)
    mutate_disk(changed)
    before = chunk_files(repo)
    out = result_json(
        appliance("save", changed, "--repo", str(repo), "--image", "changed", "--json")
    )
    after = chunk_files(repo)
    new_names = image_chunks(repo, "changed") - image_chunks(repo, "base")
    # exactly the windows whose content changed were written, and nothing else
    assert after - before == new_names
    assert out["new_chunks"] == len(new_names)
    # a 1 MiB file and a 4 KiB edit touch a handful of 4 MiB windows, not the disk
    assert 1 <= len(new_names) <= 12, len(new_names)
    assert out["reused_chunks"] >= 3 * len(new_names)
    # what is stored is about the 1 MiB of new random data, not whole windows of the disk
    assert out["new_bytes"] < 3 * 1024 * 1024
    loops.detach(changed)


def flip_byte_in_chunk_of(repo: Path, image: str, region: str) -> str:
    import zstandard

    index = json.loads(
        zstandard.ZstdDecompressor().decompress(
            (repo / "images" / image / f"{region}.idx").read_bytes()
        )
    )
    name = next(c for c in index["chunks"] if c)
    path = repo / "chunks" / name[:2] / name[2:4] / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    return name


def test_flipped_byte_fails_verify_and_restore(
    gpt: tuple[Loops, str, Path, Path], tmp_path: Path
) -> None:
    loops, source, repo, folder = gpt
    repo = copy_repo(repo, tmp_path)
    name = flip_byte_in_chunk_of(repo, "base", "p2")  # p2 is the ext4 "root" partition
    proc = appliance("verify", "--repo", str(repo), "--image", "base", check=False)
    sentence = refused(proc, 9, name)
    assert "partition 2 (ext4, root)" in sentence
    target = loops.attach(sparse_file(tmp_path, "target.img", GPT_DISK_SIZE))
    proc = appliance(
        "restore", "--repo", str(repo), "--image", "base", target, "--yes", check=False
    )
    sentence = refused(proc, 9, name)
    assert "partition 2 (ext4, root)" in sentence and "incomplete" in sentence
    loops.detach(target)


def test_damaged_index_is_refused_before_writing(
    gpt: tuple[Loops, str, Path, Path], tmp_path: Path
) -> None:
    loops, source, repo, folder = gpt
    repo = copy_repo(repo, tmp_path)
    idx = repo / "images" / "base" / "p3.idx"
    idx.write_bytes(idx.read_bytes()[:-3])
    target_file = sparse_file(tmp_path, "target.img", GPT_DISK_SIZE)
    target = loops.attach(target_file)
    before = file_digest(target_file)
    proc = appliance(
        "restore", "--repo", str(repo), "--image", "base", target, "--yes", check=False
    )
    refused(proc, 9, "index of partition 3")
    assert file_digest(target_file) == before
    loops.detach(target)


def test_killed_save_leaves_no_complete_image(
    gpt: tuple[Loops, str, Path, Path], tmp_path: Path
) -> None:
    loops, source, _, folder = gpt
    repo = tmp_path / "repo"
    # level 19 is slow enough to be killed in the middle
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance.cli",
            "save",
            source,
            "--repo",
            str(repo),
            "--image",
            "killed",
            "--level",
            "19",
            "--create",
            "--progress",
            "none",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(chunk_files(repo) if repo.exists() else ()) < 3:
        time.sleep(0.05)
    assert proc.poll() is None, "the save ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (repo / "lock").exists()  # left behind by the dead writer

    out = result_json(appliance("images", "--repo", str(repo), "--json"))
    [image] = out["images"]
    assert image["name"] == "killed" and not image["complete"] and not image["restorable"]
    listing = appliance("images", "--repo", str(repo)).stdout
    assert "INCOMPLETE" in listing

    target_file = sparse_file(tmp_path, "target.img", GPT_DISK_SIZE)
    target = loops.attach(target_file)
    before = file_digest(target_file)
    proc2 = appliance(
        "restore", "--repo", str(repo), "--image", "killed", target, "--yes", check=False
    )
    refused(proc2, 8, "incomplete")
    assert file_digest(target_file) == before
    refused(
        appliance("verify", "--repo", str(repo), "--image", "killed", check=False), 8, "incomplete"
    )
    refused(
        appliance("save", source, "--repo", str(repo), "--image", "killed", check=False),
        8,
        "--resume",
    )

    # the repository still works: the stale lock was taken over; the save resumes, restores
    appliance("save", source, "--repo", str(repo), "--image", "killed", "--resume")
    appliance("verify", "--repo", str(repo), "--image", "killed")
    appliance("restore", "--repo", str(repo), "--image", "killed", target, "--yes")
    assert_equivalent(source, target, same_size=True)
    loops.detach(target)
    gc = result_json(appliance("gc", "--repo", str(repo), "--json"))
    assert gc["kept_chunks"] == len(image_chunks(repo, "killed"))
    assert chunk_files(repo) == image_chunks(repo, "killed")


def test_gc_removes_only_unreferenced_chunks(
    gpt: tuple[Loops, str, Path, Path], tmp_path: Path
) -> None:
    loops, source, repo, folder = gpt
    repo = copy_repo(repo, tmp_path)
    keep = image_chunks(repo, "base")
    stray = "0" * 64
    (repo / "chunks" / "00" / "00").mkdir(parents=True, exist_ok=True)
    (repo / "chunks" / "00" / "00" / stray).write_bytes(b"junk")
    out = result_json(appliance("gc", "--repo", str(repo), "--json"))
    assert out["removed_chunks"] == 1 and chunk_files(repo) == keep
    appliance("verify", "--repo", str(repo), "--image", "base")


def test_second_writer_is_refused(gpt: tuple[Loops, str, Path, Path], tmp_path: Path) -> None:
    loops, source, repo, folder = gpt
    repo = copy_repo(repo, tmp_path)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        stat = Path(f"/proc/{sleeper.pid}/stat").read_text()
        start = stat[stat.rfind(")") + 2 :].split()[19]
        (repo / "lock").write_text(
            json.dumps(
                {
                    "pid": sleeper.pid,
                    "host": socket.gethostname(),
                    "start": start,
                    "command": "save sdz",
                    "since": "now",
                }
            )
        )
        proc = appliance("save", source, "--repo", str(repo), "--image", "second", check=False)
        refused(proc, 7, "in use by another job")
        refused(appliance("gc", "--repo", str(repo), check=False), 7, "in use")
        assert not (repo / "images" / "second").exists()
    finally:
        sleeper.kill()
        sleeper.wait()

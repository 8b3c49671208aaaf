"""A partition of a saved image mounted read-only and read as files (jobs/imagemount.py),
on real disks saved by the real appliance: every file of every mountable filesystem (FAT32,
ext4, NTFS, xfs, btrfs; ext4 with 2,000 files, NTFS with Unicode names, btrfs with a
subvolume and compression, exFAT) reads as on its source, and the repository is not changed
by a byte. A damaged chunk fails the files it holds with EIO and no other. `appliance mount`
stays until `appliance umount`, which undoes every step even after a SIGKILL. A VM disk file
(qcow2) mounts through the shelf's view."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit.browsedisk import build_browse_disk, source_tree
from kit.cli import appliance, result_json
from kit.diskbuild import build_gpt_disk, build_mbr_disk
from kit.diskcompare import Entry, fiemap_windows, partition_nodes, walk_tree
from kit.loops import Loops
from kit.webserve import nginx

from appliance.errors import UsageError
from appliance.jobs.imagemount import (
    ImageRef,
    find_mount,
    mounted_partition,
    mounts_dir,
    partitions_of,
)
from appliance.repo.image import load_image
from appliance.repo.repository import Repository

pytestmark = pytest.mark.root

WINDOW = 4 << 20


@dataclass(frozen=True)
class Saved:
    repo: Path
    sources: dict[str, str]  # image name -> its source disk's loop node
    files: dict[str, Path]  # image name -> the source disk's image file


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Saved]:
    folder = tmp_path_factory.mktemp("mount")
    loops = Loops(folder)
    try:
        builders = {"gpt": build_gpt_disk, "mbr": build_mbr_disk, "browse": build_browse_disk}
        sources, files = {}, {}
        for name, build in builders.items():
            files[name] = folder / f"{name}.img"
            sources[name] = build(loops, files[name])
            appliance("save", sources[name], "--repo", str(folder / "repo"), "--image", name,
                      *(["--create"] if name == "gpt" else []))  # fmt: skip
        yield Saved(folder / "repo", sources, files)
    finally:
        loops.cleanup()


def repo_digest(repo: Path) -> dict[str, str]:
    """Every file of the repository and its sha256."""
    out = {}
    for path in sorted(repo.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(repo))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def comparable(tree: dict[str, Entry], fstype: str) -> dict[str, Entry]:
    """FAT without a kernel driver is read by fusefat, which shows 8.3 names in capitals
    (mtools and Windows keep their lower-case flag) and the volume label as an empty file;
    modes on FAT and exFAT are the reader's, not the filesystem's."""
    if fstype not in ("vfat", "exfat"):
        return tree
    return {
        (rel.casefold() if fstype == "vfat" else rel): entry._replace(mode=None)
        for rel, entry in tree.items()
        if not (fstype == "vfat" and entry.kind == "file" and entry.size == 0 and "/" not in rel)
    }


CASES = [
    ("gpt", 1, "vfat"),
    ("gpt", 2, "ext4"),
    ("gpt", 3, "ntfs"),
    ("mbr", 1, "ext4"),
    ("mbr", 5, "xfs"),
    ("mbr", 6, "btrfs"),
    ("browse", 1, "ext4"),
    ("browse", 2, "ntfs"),
    ("browse", 3, "btrfs"),
    ("browse", 4, "exfat"),
]


@pytest.mark.parametrize(("image", "number", "fstype"), CASES)
def test_every_file_reads_as_on_the_source_and_the_repository_is_untouched(
    saved: Saved, image: str, number: int, fstype: str
) -> None:
    part = partition_nodes(saved.sources[image])[number]
    expected = comparable(source_tree(part, fstype), fstype)
    before = repo_digest(saved.repo)
    ref = ImageRef(repo=str(saved.repo), image=image)
    with mounted_partition(ref, number) as root:
        got = comparable(walk_tree(root, with_mode=fstype not in ("vfat", "exfat")), fstype)
        assert os.statvfs(root).f_flag & os.ST_RDONLY
        with pytest.raises(OSError) as caught:
            (root / "new-file").write_bytes(b"x")
        assert caught.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    assert not root.exists()
    assert got == expected
    assert len(got) > 5
    assert repo_digest(saved.repo) == before


def test_partitions_are_listed_with_why_one_cannot_be_mounted(saved: Saved) -> None:
    choices = {c.number: c for c in partitions_of(ImageRef(repo=str(saved.repo), image="gpt"))}
    assert [c.fstype for c in choices.values()] == ["vfat", "ext4", "ntfs", "swap"]
    assert choices[2].mountable and choices[2].label == "root"
    assert not choices[4].mountable and "swap" in (choices[4].reason or "")
    with (
        pytest.raises(UsageError, match="It is swap space"),
        mounted_partition(ImageRef(repo=str(saved.repo), image="gpt"), 4),
    ):
        pass


def test_a_damaged_chunk_fails_the_files_it_holds_with_eio_and_no_other(
    saved: Saved, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["cp", "-a", str(saved.repo), str(repo)], check=True)
    ref = ImageRef(repo=str(repo), image="browse")
    with mounted_partition(ref, 1) as root:
        expected = walk_tree(root)
        files = [rel for rel, e in expected.items() if e.kind == "file"]
        windows = {rel: fiemap_windows(root / rel, WINDOW) for rel in files}
    damaged = min(windows["big/random.bin"])
    chunk = load_image(Repository.open(repo), "browse").indexes["p1"].chunks[damaged]
    assert chunk is not None
    path = repo / "chunks" / chunk[:2] / chunk[2:4] / chunk
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 0xFF
    path.write_bytes(bytes(blob))
    failed, good = [], []
    with mounted_partition(ref, 1) as root:
        for rel in sorted(windows):
            try:
                data = (root / rel).read_bytes()
            except OSError as exc:
                assert exc.errno == errno.EIO, (rel, exc)
                failed.append(rel)
                continue
            assert hashlib.sha256(data).hexdigest() == expected[rel].digest, rel
            good.append(rel)
    touching = sorted(rel for rel, where in windows.items() if damaged in where)
    assert "big/random.bin" in failed
    assert failed == touching
    assert len(good) > 1900


def mounted_at(path: Path) -> bool:
    return any(line.split()[1] == str(path) for line in open("/proc/self/mounts"))


def loops_under(folder: Path) -> list[str]:
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        if backing.read_text().strip().startswith(str(folder)):
            found.append(backing.parent.parent.name)
    return found


@pytest.mark.parametrize("killed", ["view_pid", "pid"])
def test_a_mount_stays_and_umount_undoes_it_after_a_sigkill(
    saved: Saved, tmp_path: Path, killed: str
) -> None:
    where = tmp_path / "here"
    where.mkdir()
    proc = appliance("mount", "--repo", str(saved.repo), "--image", "mbr", "--partition", "5",
                     str(where), "--json")  # fmt: skip
    result = result_json(proc)
    assert result["fstype"] == "xfs" and result["dir"] == str(where)
    assert (where / "xfs.id").read_bytes() == b"xfs seed 0\n"
    found = find_mount(where)
    assert found is not None
    folder, record = found
    assert loops_under(folder)
    os.kill(record[killed], signal.SIGKILL)
    time.sleep(0.5)
    appliance("umount", str(where))
    deadline = time.monotonic() + 20
    while (os.path.exists(f"/proc/{record['view_pid']}") or folder.exists()) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert not mounted_at(where) and not mounted_at(folder / "view")
    assert not loops_under(folder)
    assert not folder.exists()
    assert not os.path.exists(f"/proc/{record['view_pid']}")
    assert where.is_dir() and not any(where.iterdir())


def test_a_dead_mount_is_cleared_by_the_next_mount(saved: Saved, tmp_path: Path) -> None:
    where = tmp_path / "here"
    where.mkdir()
    appliance("mount", "--repo", str(saved.repo), "--image", "gpt", "--partition", "2", str(where))
    found = find_mount(where)
    assert found is not None
    folder, record = found
    os.kill(record["pid"], signal.SIGKILL)
    os.kill(record["view_pid"], signal.SIGKILL)
    time.sleep(0.5)
    with mounted_partition(ImageRef(repo=str(saved.repo), image="gpt"), 3) as root:
        assert (root / "data.id").exists()
        assert not mounted_at(where) and not folder.exists()
    assert not loops_under(folder)
    assert not list(mounts_dir().glob(folder.name))


def test_a_mount_onto_a_busy_or_full_folder_is_refused(saved: Saved, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    proc = appliance("mount", "--repo", str(saved.repo), "--image", "gpt", "--partition", "2",
                     str(tmp_path / "full"), check=False)  # fmt: skip
    assert proc.returncode == 2 and "not empty" in proc.stderr


def test_a_qcow2_disk_file_mounts_through_the_shelf_view(saved: Saved, tmp_path: Path) -> None:
    qcow2 = tmp_path / "laptop.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(saved.files["gpt"]), str(qcow2)],
                   check=True)  # fmt: skip
    part = partition_nodes(saved.sources["gpt"])[2]
    expected = source_tree(part, "ext4")
    listed = result_json(appliance("files", "--file", str(qcow2), "--partition", "2", "--json"))
    top = {rel for rel in expected if rel != "." and "/" not in rel}
    assert {e["name"] for e in listed["entries"]} == top
    sizes = {e["name"]: e["size"] for e in listed["entries"] if e["type"] == "file"}
    assert sizes["readme.txt"] == expected["readme.txt"].size
    with mounted_partition(ImageRef(file=str(qcow2)), 2) as root:
        assert walk_tree(root) == expected
    assert not list(
        Path(os.environ.get("APPLIANCE_TMP", "/var/tmp")).glob("appliance-vm-*/disk.raw")
    )


def test_an_image_on_a_web_server_is_browsed_and_mounted_from_there(
    saved: Saved, tmp_path: Path
) -> None:
    part = partition_nodes(saved.sources["mbr"])[5]
    expected = source_tree(part, "xfs")
    with nginx(saved.repo.parent, tmp_path) as base:
        url = f"{base}/{saved.repo.name}/"
        listed = result_json(appliance("files", "--repo", url, "--image", "mbr",
                                       "--partition", "5", "data", "--json"))  # fmt: skip
        names = {e["name"] for e in listed["entries"]}
        assert names == {rel.split("/")[1] for rel in expected if rel.startswith("data/")}
        with mounted_partition(ImageRef(repo=url, image="mbr"), 5) as root:
            assert walk_tree(root) == expected

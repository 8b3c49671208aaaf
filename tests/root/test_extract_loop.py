"""Copying files out of a real filesystem mounted read-only (ext4, NTFS through ntfs-3g),
as an image's partition is mounted, onto a folder of another real filesystem; a full and a
read-only destination."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from kit.diskcompare import mounted
from kit.filetrees import MiB, digests, files_of, fill, make_filesystem, readonly_partition
from kit.loops import Loops

from appliance.errors import SafetyRefusal
from appliance.jobs.copyout import CopyOut, DestinationFull
from appliance.jobs.extract import ImageWhere, copy_files, extract

pytestmark = pytest.mark.root

ContextManager = AbstractContextManager[Path]


@contextmanager
def destination(loops: Loops, tmp_path: Path, size: int, name: str) -> Iterator[Path]:
    """A new ext4 on another loop device, mounted read-write: the disk files go to."""
    node = make_filesystem(loops, tmp_path, f"{name}.img", "ext4", size)
    with mounted(node, "ext4", readonly=False, mountpoint=loops.mountpoint(name)) as root:
        yield root


@pytest.mark.parametrize("fstype", ["ext4", "ntfs"])
def test_extract_a_folder_keeps_contents_and_dates(
    loops: Loops, tmp_path: Path, fstype: str
) -> None:
    files = files_of(seed=13)
    node = make_filesystem(loops, tmp_path, "part.img", fstype, 64 * MiB)
    fill(loops, node, fstype, files)
    loops.detach(node)  # from now on only read, as an image is

    def opener(
        where: ImageWhere, number: int, stop: threading.Event
    ) -> AbstractContextManager[Path]:
        assert (where.file, number) == (str(tmp_path / "part.img"), 1)
        return readonly_partition(loops, tmp_path / "part.img", fstype, loops.mountpoint("image"))

    with destination(loops, tmp_path, 64 * MiB, "dest") as dest:
        report = extract(
            ImageWhere(file=str(tmp_path / "part.img")),
            1,
            ["/Documents"],
            dest / "got back",
            opener=opener,
        )
        got = digests(dest / "got back" / "Documents")
        expected = {
            rel.removeprefix("Documents/"): data
            for rel, data in files.items()
            if rel.startswith("Documents/")
        }
        with readonly_partition(
            loops, tmp_path / "part.img", fstype, loops.mountpoint("again")
        ) as root:
            assert got == digests(root / "Documents")  # same bytes, same dates
        assert set(got) == set(expected)
        assert {mtime for _, mtime in got.values()} == {1_600_000_000}
        assert (dest / "got back/Documents").stat().st_mtime_ns // 10**9 == 1_600_000_000
    assert report.complete and report.files == len(expected)
    assert report.bytes == sum(len(data) for data in expected.values())


def test_a_full_destination_stops_and_keeps_what_was_copied(loops: Loops, tmp_path: Path) -> None:
    files = {"a-small.txt": b"small\n", "b-big.bin": bytes(range(256)) * (40 * 4096)}
    files["c-after.txt"] = b"copied beside the big one, or never reached\n"
    node = make_filesystem(loops, tmp_path, "part.img", "ext4", 64 * MiB)
    fill(loops, node, "ext4", files)
    loops.detach(node)
    with (
        readonly_partition(loops, tmp_path / "part.img", "ext4", loops.mountpoint("image")) as root,
        destination(loops, tmp_path, 8 * MiB, "small") as dest,
    ):
        with pytest.raises(DestinationFull) as full:
            CopyOut(root, dest).run(["/a-small.txt", "/b-big.bin", "/c-after.txt"])
        assert "is full" in str(full.value) and full.value.exit_code == 4
        # the file that did not fit is gone; the files copied beside it stay whole, counted
        left = sorted(p.name for p in dest.iterdir() if p.name != "lost+found")
        assert "a-small.txt" in left and "b-big.bin" not in left
        assert all((dest / name).read_bytes() == files[name] for name in left)
        assert full.value.report.files == len(left)


def test_a_read_only_destination_is_refused_before_anything(loops: Loops, tmp_path: Path) -> None:
    node = make_filesystem(loops, tmp_path, "part.img", "ext4", 32 * MiB)
    fill(loops, node, "ext4", {"x.txt": b"x"})
    loops.detach(node)
    other = make_filesystem(loops, tmp_path, "repo.img", "ext4", 32 * MiB)
    with (
        readonly_partition(loops, tmp_path / "part.img", "ext4", loops.mountpoint("image")) as root,
        mounted(other, "ext4", readonly=True, mountpoint=loops.mountpoint("repo")) as repo_mount,
    ):
        with pytest.raises(SafetyRefusal, match="mounted read-only"):
            copy_files(root, ["/x.txt"], repo_mount / "out")
        with pytest.raises(SafetyRefusal, match="inside the image's partition"):
            copy_files(root, ["/x.txt"], root)

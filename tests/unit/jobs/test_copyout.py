"""The copy-out engine on plain folders: what is kept, skipped, failed, renamed, refused."""

from __future__ import annotations

import errno
import io
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from appliance.errors import Cancelled, DeviceError, SafetyRefusal, UsageError
from appliance.jobs.copydest import check_destination, sibling
from appliance.jobs.copyout import CopyOut, CopyStopped, Readable, open_unbuffered
from appliance.jobs.extract import copy_files
from appliance.progress import Phase, Progress, ProgressEvent

OLD = 1_500_000_000_123_456_789  # 2017, with nanoseconds
OLDER = 1_400_000_000_000_000_000


def tree(root: Path) -> Path:
    """A small partition's tree: files of several sizes, a sparse file, a link, a fifo."""
    docs = root / "home" / "ann" / "Documents"
    docs.mkdir(parents=True)
    (docs / "notes.txt").write_text("remember the milk\n")
    (docs / "big.bin").write_bytes(os.urandom(9 * 1024 * 1024 + 17))
    with open(docs / "sparse.img", "wb") as f:
        f.truncate(12 * 1024 * 1024)
        f.seek(5 * 1024 * 1024)
        f.write(b"data in the middle")
    (docs / "empty").write_bytes(b"")
    os.symlink("notes.txt", docs / "link-to-notes")
    os.symlink("/nowhere/at/all", docs / "dangling")
    os.mkfifo(docs / "pipe")
    os.chmod(docs / "notes.txt", 0o640)
    os.chown(docs / "notes.txt", 1234, 5678)
    os.utime(docs / "notes.txt", ns=(OLDER, OLD))
    os.utime(docs / "link-to-notes", ns=(OLDER, OLD), follow_symlinks=False)
    os.chmod(docs, 0o750)
    os.utime(docs, ns=(OLDER, OLD))
    return root


def test_copies_content_dates_modes_owners_and_links(tmp_path: Path) -> None:
    root = tree(tmp_path / "part")
    dest = tmp_path / "out"
    dest.mkdir()
    events: list[ProgressEvent] = []
    progress = Progress(events.append, interval=0)
    report = CopyOut(root, dest, progress=progress, read_size=1024 * 1024).run(["/home/ann"])

    src = root / "home/ann/Documents"
    got = dest / "ann/Documents"
    st = os.stat(got / "notes.txt")  # before reading it (that would set its atime)
    for name in ("notes.txt", "big.bin", "sparse.img", "empty"):
        assert (got / name).read_bytes() == (src / name).read_bytes(), name
    assert (st.st_mtime_ns, st.st_atime_ns) == (OLD, OLDER)
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 1234, 5678)
    folder = os.stat(got)
    assert (folder.st_mtime_ns, folder.st_mode & 0o7777) == (OLD, 0o750)
    assert os.readlink(got / "link-to-notes") == "notes.txt"
    assert os.lstat(got / "link-to-notes").st_mtime_ns == OLD
    assert os.readlink(got / "dangling") == "/nowhere/at/all"
    # the hole stays a hole: far fewer blocks than bytes
    assert os.stat(got / "sparse.img").st_blocks * 512 < 2 * 1024 * 1024

    sizes = 18 + (9 * 1024 * 1024 + 17) + 12 * 1024 * 1024
    assert (report.files, report.bytes, report.links, report.folders) == (4, sizes, 2, 2)
    assert [p.path for p in report.skipped] == ["/home/ann/Documents/pipe"]
    assert "fifo" in report.skipped[0].why
    assert not report.failed and not report.complete
    assert report.total_bytes == sizes
    assert events[-1].phase == Phase.DONE and events[-1].done == events[-1].total == sizes
    assert any(ev.phase == Phase.EXTRACT for ev in events)


def test_socket_and_device_are_skipped_and_listed(tmp_path: Path) -> None:
    root = tmp_path / "part"
    root.mkdir()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        os.mknod(root / "null", 0o600 | 0o020000, os.makedev(1, 3))
        (root / "kept").write_text("x")
        dest = tmp_path / "out"
        dest.mkdir()
        report = CopyOut(root, dest).run(["/sock", "/null", "/kept"])
    assert [(p.path, p.why) for p in report.skipped] == [
        ("/sock", "a socket is not copied."),
        ("/null", "a device is not copied."),
    ]
    assert sorted(os.listdir(dest)) == ["kept"]


class FailingReads:
    """The read seam: files whose name is in `bad` fail with EIO after their first read, as a
    FUSE view does over a damaged chunk."""

    def __init__(self, bad: set[str]) -> None:
        self.bad = bad

    def __call__(self, path: Path) -> Readable:
        inner = open_unbuffered(path)
        if path.name not in self.bad:
            return inner
        return Damaged(inner)


class Damaged(io.RawIOBase):
    def __init__(self, inner: Readable) -> None:
        self.inner = inner
        self.reads = 0

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self.reads += 1
        if self.reads > 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return self.inner.readinto(buffer) or 0

    def close(self) -> None:
        self.inner.close()
        super().close()


def test_a_file_that_cannot_be_read_is_listed_and_the_others_are_copied(tmp_path: Path) -> None:
    root = tree(tmp_path / "part")
    dest = tmp_path / "out"
    dest.mkdir()
    events: list[ProgressEvent] = []
    job = CopyOut(
        root,
        dest,
        progress=Progress(events.append, interval=0),
        reader=FailingReads({"big.bin"}),
        read_size=1024 * 1024,
    )
    report = job.run(["/home/ann/Documents"])
    got = dest / "Documents"
    assert not (got / "big.bin").exists()  # the partial copy is gone
    assert (got / "notes.txt").read_text() == "remember the milk\n"
    assert (got / "sparse.img").exists()
    assert [p.path for p in report.failed] == ["/home/ann/Documents/big.bin"]
    assert "input/output error" in report.failed[0].why
    assert any(line.startswith("FAILED: /home/ann/Documents/big.bin") for line in report.lines())
    # the bar ends full: the failed file's bytes left the total
    assert events[-1].done == events[-1].total == report.bytes


def test_names_that_exist_get_numbered_siblings_never_overwritten(tmp_path: Path) -> None:
    root = tmp_path / "part"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a/notes.txt").write_text("from a")
    (root / "b/notes.txt").write_text("from b")
    (root / "b/.profile").write_text("dot")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine, keep me")
    (dest / "b").mkdir()

    report = CopyOut(root, dest).run(["/a/notes.txt", "/b/notes.txt", "/b"])
    assert (dest / "notes.txt").read_text() == "mine, keep me"
    assert (dest / "notes (2).txt").read_text() == "from a"
    assert (dest / "notes (3).txt").read_text() == "from b"
    assert (dest / "b (2)/.profile").read_text() == "dot"
    assert [(r.path, Path(r.stored_as).name) for r in report.renamed] == [
        ("/a/notes.txt", "notes (2).txt"),
        ("/b/notes.txt", "notes (3).txt"),
        ("/b", "b (2)"),
    ]
    assert sibling(".profile", 2) == ".profile (2)"
    assert sibling("archive.tar.gz", 3) == "archive.tar (3).gz"


def test_a_stop_removes_the_partial_file_and_keeps_the_rest(tmp_path: Path) -> None:
    root = tree(tmp_path / "part")
    dest = tmp_path / "out"
    dest.mkdir()
    cancel = threading.Event()

    class StopInBig:
        def __call__(self, path: Path) -> Readable:
            if path.name == "big.bin":
                cancel.set()  # the user pressed Esc while this file is copied
            return open_unbuffered(path)

    job = CopyOut(root, dest, cancel=cancel, reader=StopInBig(), read_size=1024 * 1024)
    with pytest.raises(CopyStopped) as stopped:
        job.run(["/home/ann/Documents/notes.txt", "/home/ann/Documents/big.bin"])
    assert isinstance(stopped.value, Cancelled)
    # big.bin was being copied: it is gone; notes.txt, copied beside it, stays only if it
    # was finished, and then whole (the report counts exactly what stays)
    left = sorted(os.listdir(dest))
    assert "big.bin" not in left
    assert len(left) == stopped.value.report.files
    for name in left:
        assert (dest / name).read_bytes() == (root / "home/ann/Documents" / name).read_bytes()


def test_a_stop_leaves_only_whole_files_whatever_the_threads_were_doing(tmp_path: Path) -> None:
    """Many files copied four at a time, stopped in the middle: every file left in the
    destination is whole, and the report counts them."""
    root = tmp_path / "part"
    (root / "many").mkdir(parents=True)
    for n in range(60):
        (root / "many" / f"f{n:02d}").write_bytes(os.urandom(300_000 + n))
    dest = tmp_path / "out"
    dest.mkdir()
    cancel = threading.Event()
    opened = [0]

    class SlowReads(io.RawIOBase):
        def __init__(self, path: Path) -> None:
            self.inner = open_unbuffered(path)

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            time.sleep(0.002)
            return self.inner.readinto(buffer[:65536]) or 0

        def close(self) -> None:
            self.inner.close()
            super().close()

    def reader(path: Path) -> Readable:
        opened[0] += 1
        if opened[0] == 25:
            cancel.set()
        return SlowReads(path)

    job = CopyOut(root, dest, cancel=cancel, reader=reader, threads=4)
    with pytest.raises(CopyStopped) as stopped:
        job.run(["/many"])
    left = sorted(os.listdir(dest / "many"))
    assert 0 < len(left) < 60
    assert len(left) == stopped.value.report.files
    for name in left:
        assert (dest / "many" / name).read_bytes() == (root / "many" / name).read_bytes()


def test_a_missing_name_or_one_outside_the_partition_copies_nothing(tmp_path: Path) -> None:
    root = tree(tmp_path / "part")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DeviceError, match="/home/bob is not in the partition"):
        CopyOut(root, dest).run(["/home/ann", "/home/bob"])
    assert os.listdir(dest) == []
    (tmp_path / "secret").write_text("outside")
    with pytest.raises(DeviceError, match="not in the partition"):  # ".." stops at its root
        CopyOut(root, dest).run(["../../secret"])
    assert os.listdir(dest) == []


def test_destination_rules(tmp_path: Path) -> None:
    root = tree(tmp_path / "part")
    with pytest.raises(SafetyRefusal, match="inside the image's partition"):
        check_destination(root / "home", tree=root)
    with pytest.raises(SafetyRefusal, match="on the filesystem that holds the image"):
        check_destination(tmp_path / "out", tree=root, sources=[tmp_path / "repo"])
    with pytest.raises(DeviceError, match="nothing was copied"):
        check_destination(tmp_path / "out", tree=root, need=1 << 62)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        check_destination(tmp_path / "file", tree=root)
    assert not (tmp_path / "out").exists()  # nothing was made by a refusal
    made = check_destination(tmp_path / "out" / "new", tree=root, need=10)
    assert made.is_dir()


def test_copy_files_checks_the_destination_first(tmp_path: Path) -> None:
    root = tree(tmp_path / "part")
    with pytest.raises(UsageError):
        copy_files(root, [], tmp_path / "out")
    with pytest.raises(SafetyRefusal):
        copy_files(root, ["/home"], root / "home" / "ann")
    report = copy_files(root, ["/home/ann/Documents/notes.txt"], tmp_path / "out")
    assert (tmp_path / "out/notes.txt").read_text() == "remember the milk\n"
    assert report.complete


def test_the_whole_partition_goes_into_the_folder_itself(tmp_path: Path) -> None:
    root = tree(tmp_path / "part")
    (root / "top.txt").write_text("top")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "top.txt").write_text("already here")
    report = CopyOut(root, dest).run(["/"])
    assert sorted(os.listdir(dest)) == ["home", "top (2).txt", "top.txt"]
    assert (dest / "home/ann/Documents/notes.txt").read_text() == "remember the milk\n"
    assert [r.path for r in report.renamed] == ["/top.txt"]

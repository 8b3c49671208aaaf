"""Copy chosen files and folders out of a mounted tree (an image's partition, mounted
read-only) into a folder of another disk.

What is kept: contents, modes, modification and access dates, owners where the destination's
filesystem takes them (FAT and NTFS through ntfs-3g do not: then they are dropped, said
once), symbolic links as links. Devices, fifos and sockets are skipped and listed; a hard link
becomes a file of its own. A file whose read fails (EIO: a damaged chunk under it) is listed as
failed, its partial copy removed, and the others go on. A full destination stops the job with
one sentence; what was copied stays, the partial file is removed. Nothing is ever overwritten:
a name that exists in the destination gets a numbered sibling, "report (2).pdf", and the
report lists it.

Progress is weighted by bytes (the regular files' sizes, counted before the first write).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from appliance.errors import Cancelled, DeviceError
from appliance.jobs.copydest import numbered, reserve
from appliance.progress import Phase, Progress
from appliance.units import human_size

READ_SIZE = 4 * 1024 * 1024  # one read: large, so that a FUSE view reads whole chunks
FULL = (errno.ENOSPC, errno.EDQUOT)
WRITEBACK = 32 * 1024 * 1024  # written bytes of a file handed to the destination's disk
THREADS = 4  # files copied at once (see CopyOut)


class Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...

    def close(self) -> None: ...


Reader = Callable[[Path], Readable]  # opens a source file (the seam tests fail reads through)


def open_unbuffered(path: Path) -> Readable:
    return open(path, "rb", buffering=0)


@dataclass(frozen=True)
class Problem:
    path: str  # as the user names it: the path inside the partition
    why: str  # one sentence, without the path


@dataclass(frozen=True)
class Renamed:
    path: str  # inside the partition
    stored_as: str  # the name it got in the destination


@dataclass
class CopyReport:
    dest: str
    files: int = 0
    bytes: int = 0
    folders: int = 0
    links: int = 0
    total_bytes: int = 0  # what the chosen files hold
    renamed: list[Renamed] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    failed: list[Problem] = field(default_factory=list)
    owners_dropped: bool = False  # the destination's filesystem keeps no owners
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.skipped and not self.failed

    def lines(self) -> list[str]:
        """The report as people read it: what was copied, then every skip and failure."""
        out = [
            f"Copied {self.files} file(s), {self.folders} folder(s) and {self.links} link(s) "
            f"({human_size(self.bytes)}) into {self.dest}."
        ]
        out += [f"Renamed: {r.path} is stored as {r.stored_as} (the name was taken)." for r in
                self.renamed]  # fmt: skip
        out += [f"Skipped: {p.path}: {p.why}" for p in self.skipped]
        out += [f"FAILED: {p.path}: {p.why}" for p in self.failed]
        if self.owners_dropped:
            out.append("The destination's filesystem keeps no owners: the files belong to root.")
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "dest": self.dest,
            "files": self.files,
            "bytes": self.bytes,
            "folders": self.folders,
            "links": self.links,
            "total_bytes": self.total_bytes,
            "renamed": [{"path": r.path, "stored_as": r.stored_as} for r in self.renamed],
            "skipped": [{"path": p.path, "why": p.why} for p in self.skipped],
            "failed": [{"path": p.path, "why": p.why} for p in self.failed],
            "owners_dropped": self.owners_dropped,
            "seconds": round(self.seconds, 3),
        }


class DestinationFull(DeviceError):
    """The destination filled up: the job stopped; what was copied stays."""

    def __init__(self, sentence: str, report: CopyReport) -> None:
        super().__init__(sentence)
        self.report = report


class CopyStopped(Cancelled):
    """The user stopped the copy; what was copied stays."""

    def __init__(self, sentence: str, report: CopyReport) -> None:
        super().__init__(sentence)
        self.report = report


def inside(root: Path, name: str) -> Path:
    """The entry `name` (a path inside the partition, "/" or relative) under `root`, never
    outside it ("..", or a link that leaves the tree)."""
    relative = Path(os.path.normpath("/" + name.strip().lstrip("/"))).relative_to("/")
    if relative == Path("."):
        return root
    path = root / relative
    if Path(os.path.realpath(path.parent)).is_relative_to(os.path.realpath(root)):
        return path
    raise DeviceError(f"{name} is not inside the partition.")


def selected_bytes(root: Path, names: Sequence[str]) -> int:
    """The bytes the regular files among `names` (folders: everything below) hold."""
    return sum(st.st_size for _, st in walk(root, names) if stat.S_ISREG(st.st_mode))


def walk(root: Path, names: Sequence[str]) -> Iterator[tuple[Path, os.stat_result]]:
    """Every entry chosen, folders before what they hold; links are not followed."""
    for name in names:
        path = inside(root, name)
        try:
            st = path.lstat()
        except FileNotFoundError:
            raise DeviceError(f"{name} is not in the partition (nothing was copied).") from None
        yield from _walk_entry(path, st)


def _walk_entry(path: Path, st: os.stat_result) -> Iterator[tuple[Path, os.stat_result]]:
    yield path, st
    if stat.S_ISDIR(st.st_mode):
        try:
            children = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            return  # said when the copy reaches it
        for child in children:
            try:
                yield from _walk_entry(Path(child.path), child.stat(follow_symlinks=False))
            except OSError:
                continue


class CopyOut:
    """One copy job: `run(names)` copies the entries `names` of `root` into `dest`.

    One thread walks the tree in order: it makes the folders and links and claims each file's
    name (so renames come out in the walk's order); `threads` threads copy the files' bytes,
    several files at once. A view serves each read after a round trip through the loop
    device and FUSE: one file at a time left the view idle while the destination wrote, and
    each small file waited for its own round trips (measured: 2.4-3.1 s for 853 MB of an ext4
    against 1.4-1.6 s with two or more threads). A folder gets its dates and mode once every
    file in it is written. A stop or a fatal error lets the files being copied stop and
    removes them; every file that was finished stays."""

    def __init__(
        self,
        root: Path,
        dest: Path,
        *,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        reader: Reader = open_unbuffered,
        read_size: int = READ_SIZE,
        threads: int = THREADS,
    ) -> None:
        self.root = root
        self.dest = dest
        self.progress = progress or Progress(None)
        self.cancel = cancel or threading.Event()
        self.reader = reader
        self.read_size = read_size
        self.threads = max(1, threads)
        self.zeros = bytes(read_size)
        self.report = CopyReport(str(dest))
        self._buffers = threading.local()  # each copying thread's read buffer
        self._lock = threading.Lock()  # the report, the progress's clock, the first error
        self._halt = threading.Event()  # a fatal error: every thread stops
        self._fatal: BaseException | None = None
        self._full = False  # the destination filled up (said with the final counts)
        self._cut_short = False  # a stop left something out
        self._folders: list[tuple[Path, os.stat_result]] = []  # dates kept at the end
        self._slots = threading.BoundedSemaphore(self.threads * 2)

    def run(self, names: Sequence[str]) -> CopyReport:
        started = time.monotonic()
        total = selected_bytes(self.root, names)  # also: every name exists, or nothing is done
        self.report.total_bytes = total
        self.progress.total = total
        self.progress.set_phase(Phase.EXTRACT, f"copying into {self.dest}")
        try:
            with ThreadPoolExecutor(self.threads, thread_name_prefix="copy") as pool:
                try:
                    for name in names:
                        path = inside(self.root, name)
                        if path == self.root:  # the whole partition: what it holds goes in dest
                            self._children(path, self.dest, pool)
                        else:
                            self._entry(path, path.lstat(), self.dest, pool)
                except _Halt:
                    pass  # stopped, or a copying thread failed: the others end first
                except BaseException as exc:
                    self._fail(exc)
            self._raise_if_stopped()
            for target, st in self._folders:  # deepest first: the walk added them so
                self._keep(target, st)
            self.progress.set_phase(Phase.SYNC, f"writing the files onto {self.dest}'s disk")
            self._flush()
        finally:
            self.report.seconds = time.monotonic() - started
        self.progress.set_phase(Phase.DONE)
        return self.report

    def _raise_if_stopped(self) -> None:
        """Once every copying thread has ended: the job's first fatal error, or the stop."""
        if self._full:
            raise DestinationFull(
                f"The destination {self.dest} is full: {self.report.files} file(s) "
                f"({human_size(self.report.bytes)}) were copied and stay there; the files "
                "being copied were removed.",
                self.report,
            )
        if self._fatal is not None:
            raise self._fatal
        if self.cancel.is_set() and self._cut_short:
            raise CopyStopped(
                f"Stopped by the user: {self.report.files} file(s) copied into {self.dest} "
                "stay there; the files being copied were removed.",
                self.report,
            )

    def _fail(self, exc: BaseException) -> None:
        """The first fatal error stops the job (the later ones follow from it)."""
        with self._lock:
            if isinstance(exc, _Full):
                self._full = True
            elif self._fatal is None and not self._full:
                self._fatal = exc
        self._halt.set()

    def _flush(self) -> None:
        """Put what was copied on the destination's disk before saying it is done (someone
        unplugs that disk next): coreutils' `sync --file-system` (syncfs(2))."""
        done = subprocess.run(
            ["sync", "--file-system", str(self.dest)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            why = done.stderr.strip().rpartition(": ")[2] or f"sync exited {done.returncode}"
            raise DeviceError(f"{self.dest}'s disk did not take the files ({why}).")

    # -- one entry ----------------------------------------------------------------------
    def _shown(self, path: Path) -> str:
        relative = str(path.relative_to(self.root))
        return "/" if relative == "." else "/" + relative

    def _check_stop(self) -> None:
        if self._stopping():
            raise _Halt

    def _stopping(self) -> bool:
        if self.cancel.is_set() or self._halt.is_set():
            self._cut_short = True
            return True
        return False

    def _entry(self, path: Path, st: os.stat_result, into: Path, pool: ThreadPoolExecutor) -> None:
        self._check_stop()
        mode = st.st_mode
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            self.report.skipped.append(Problem(self._shown(path), f"{_kind(mode)} is not copied."))
            return
        name = path.name or "partition"
        if stat.S_ISLNK(mode):
            self._link(path, st, into, name)
            return
        try:
            target = reserve(into, name, directory=stat.S_ISDIR(mode))
        except OSError as exc:
            self._written(exc)
            raise DeviceError(f"{into / name} cannot be written ({_why(exc)}).") from exc
        if target.name != name:
            self.report.renamed.append(Renamed(self._shown(path), str(target)))
        if stat.S_ISDIR(mode):
            self.report.folders += 1
            self._children(path, target, pool)
            self._folders.append((target, st))
        else:
            self._hand_over(pool, path, st, target)

    def _children(self, path: Path, target: Path, pool: ThreadPoolExecutor) -> None:
        try:
            children = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            with self._lock:
                self.report.failed.append(
                    Problem(self._shown(path), f"its list of files cannot be read ({_why(exc)}).")
                )
            children = []
        for child in children:
            try:
                child_st = child.stat(follow_symlinks=False)
            except OSError as exc:
                with self._lock:
                    self.report.failed.append(Problem(self._shown(Path(child.path)), _why(exc)))
                continue
            self._entry(Path(child.path), child_st, target, pool)

    def _hand_over(
        self, pool: ThreadPoolExecutor, path: Path, st: os.stat_result, target: Path
    ) -> None:
        """Copy the file on a copying thread, once one of the few places ahead is free (the
        walk never runs far ahead of the copies: a stop leaves few names claimed)."""
        while not self._slots.acquire(timeout=0.1):
            self._tick()
            if self._stopping():
                target.unlink(missing_ok=True)
                raise _Halt
        try:
            future = pool.submit(self._copy_task, path, st, target)
        except BaseException:
            self._slots.release()
            target.unlink(missing_ok=True)
            raise
        future.add_done_callback(lambda _: self._slots.release())

    def _copy_task(self, path: Path, st: os.stat_result, target: Path) -> None:
        try:
            if self._stopping():
                target.unlink(missing_ok=True)  # its name was claimed; nothing was copied
                return
            self._file(path, st, target)
        except _Halt:
            pass  # the file was removed
        except BaseException as exc:
            self._fail(exc)

    def _link(self, path: Path, st: os.stat_result, into: Path, name: str) -> None:
        where = numbered(into, name)
        try:
            os.symlink(os.readlink(path), where)
        except OSError as exc:
            self._written(exc)
            self.report.skipped.append(
                Problem(
                    self._shown(path),
                    "a symbolic link, and the destination's filesystem holds none.",
                )
            )
            return
        if where.name != name:
            self.report.renamed.append(Renamed(self._shown(path), str(where)))
        self.report.links += 1
        self._keep(where, st, link=True)

    def _file(self, path: Path, st: os.stat_result, target: Path) -> None:
        """Copy one file (on a copying thread); a file that cannot be read, or is too large
        for the destination, is listed as failed and removed; any other error is raised."""
        poured = [0]  # bytes of the file counted in the progress
        try:
            # the walk made it, empty: no O_CREAT (it would lock the folder against the walk's
            # next names) and no O_TRUNC (ext4 then flushes the file at its close)
            fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            target.unlink(missing_ok=True)
            self._written(exc)
            raise DeviceError(f"{target} cannot be written ({_why(exc)}).") from exc
        try:
            try:
                source = self.reader(path)
            except OSError as exc:
                raise _ReadFailed(exc) from exc
            try:
                self._pour(source, fd, poured)
            finally:
                source.close()
            self._keep_fd(fd, st)
        except _ReadFailed as failed:
            self._drop(fd, target, poured[0])
            self._failed(path, st, f"it cannot be read ({_why(failed.error)}); it was not copied.")
            return
        except BaseException as exc:
            self._drop(fd, target, poured[0])
            if isinstance(exc, OSError):
                if exc.errno == errno.EFBIG:  # FAT: no file over 4 GiB
                    self._failed(
                        path,
                        st,
                        "it is too large for the destination's filesystem "
                        "(FAT holds files of at most 4 GiB).",
                    )
                    return
                self._written(exc)
                raise DeviceError(f"{target} cannot be written ({_why(exc)}).") from exc
            raise
        os.close(fd)
        with self._lock:
            self.report.files += 1
            self.report.bytes += poured[0]

    def _drop(self, fd: int, target: Path, poured: int) -> None:
        """A file that was not copied whole: closed, removed, its bytes out of the progress."""
        os.close(fd)
        target.unlink(missing_ok=True)
        self.progress.add(-poured)

    def _failed(self, path: Path, st: os.stat_result, why: str) -> None:
        self.progress.adjust_total(-st.st_size)
        with self._lock:
            self.report.failed.append(Problem(self._shown(path), why))

    def _pour(self, source: Readable, fd: int, poured: list[int]) -> None:
        """Copy `source` into `fd` in large reads; all-zero reads become holes. `poured[0]`
        counts the bytes read and written so far."""
        view = self._buffer()
        hole = False
        kicked = 0  # bytes of the file handed to the disk's writeback so far
        while True:
            self._check_stop()
            got = _read_into(source, view)
            if not got:
                break
            piece = view[:got]
            if _all_zero(piece, self.zeros):
                os.lseek(fd, got, os.SEEK_CUR)
                hole = True
            else:
                written = 0
                while written < got:
                    written += os.write(fd, piece[written:])
                hole = False
            poured[0] += got
            if poured[0] - kicked >= WRITEBACK:
                _write_back(fd, kicked, poured[0] - kicked)
                kicked = poured[0]
            self.progress.add(got)
            self._tick()
        if hole:
            os.ftruncate(fd, poured[0])
        if poured[0] > kicked and poured[0] >= WRITEBACK:
            _write_back(fd, kicked, poured[0] - kicked)

    def _buffer(self) -> memoryview:
        view: memoryview | None = getattr(self._buffers, "view", None)
        if view is None:
            view = self._buffers.view = memoryview(bytearray(self.read_size))
        return view

    def _tick(self) -> None:
        if self._lock.acquire(blocking=False):  # one thread tells the listener at a time
            try:
                self.progress.tick()
            finally:
                self._lock.release()

    # -- what is kept ----------------------------------------------------------------------
    def _keep_fd(self, fd: int, st: os.stat_result) -> None:
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
        except OSError:
            self.report.owners_dropped = True
        with contextlib.suppress(OSError):  # FAT: no modes
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))

    def _keep(self, target: Path, st: os.stat_result, link: bool = False) -> None:
        try:
            os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
        except OSError:
            self.report.owners_dropped = True
        if not link:
            with contextlib.suppress(OSError):
                os.chmod(target, stat.S_IMODE(st.st_mode))
        with contextlib.suppress(OSError):  # a link's dates, where the filesystem keeps none
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def _written(self, exc: OSError) -> None:
        """A write that failed because the destination is full stops the whole job (said
        once every copying thread has ended, with what was copied)."""
        if exc.errno in FULL:
            raise _Full from exc


class _Full(Exception):
    """The destination is full (turned into DestinationFull with the final counts)."""


class _Halt(Exception):
    """The job stops (the user's stop, or another thread's fatal error)."""


class _ReadFailed(Exception):
    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _all_zero(piece: memoryview, zeros: bytes) -> bool:
    """Whether `piece` holds zeros only (a memoryview comparison runs byte by byte: 4 ms for
    4 MiB of zeros; a data read differs within its first page)."""
    head = min(len(piece), 4096)
    return piece[:head] == zeros[:head] and piece.tobytes() == zeros[: len(piece)]


def _read_into(source: Readable, buffer: memoryview) -> int:
    try:
        return source.readinto(buffer) or 0
    except OSError as exc:
        raise _ReadFailed(exc) from exc


def _write_back(fd: int, offset: int, length: int) -> None:
    """Start writing `length` bytes of `fd` from `offset` onto the destination's disk now and
    let their pages go once written (POSIX_FADV_DONTNEED starts the writeback without waiting
    for it): the disk writes while the next bytes are read, the final flush finds little
    left, and the page cache is not filled with what was copied."""
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def _why(exc: OSError) -> str:
    if exc.errno == errno.EIO:
        return "input/output error: a damaged part of the image lies under it"
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a fifo (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"

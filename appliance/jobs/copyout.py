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
    """One copy job: `run(names)` copies the entries `names` of `root` into `dest`."""

    def __init__(
        self,
        root: Path,
        dest: Path,
        *,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        reader: Reader = open_unbuffered,
        read_size: int = READ_SIZE,
    ) -> None:
        self.root = root
        self.dest = dest
        self.progress = progress or Progress(None)
        self.cancel = cancel or threading.Event()
        self.reader = reader
        self.buffer = bytearray(read_size)
        self.zeros = memoryview(bytes(read_size))
        self.poured = 0  # bytes of the file being copied, counted in the progress
        self.report = CopyReport(str(dest))

    def run(self, names: Sequence[str]) -> CopyReport:
        started = time.monotonic()
        total = selected_bytes(self.root, names)  # also: every name exists, or nothing is done
        self.report.total_bytes = total
        self.progress.total = total
        self.progress.set_phase(Phase.EXTRACT, f"copying into {self.dest}")
        try:
            for name in names:
                path = inside(self.root, name)
                if path == self.root:  # the whole partition: what it holds goes into dest
                    self._children(path, self.dest)
                else:
                    self._entry(path, path.lstat(), self.dest)
            self.progress.set_phase(Phase.SYNC, f"writing the files onto {self.dest}'s disk")
            self._flush()
        finally:
            self.report.seconds = time.monotonic() - started
        self.progress.set_phase(Phase.DONE)
        return self.report

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
        if self.cancel.is_set():
            raise CopyStopped(
                f"Stopped by the user: {self.report.files} file(s) copied into {self.dest} "
                "stay there; the file being copied was removed.",
                self.report,
            )

    def _entry(self, path: Path, st: os.stat_result, into: Path) -> None:
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
            self._folder(path, st, target)
        else:
            self._file(path, st, target)

    def _folder(self, path: Path, st: os.stat_result, target: Path) -> None:
        self.report.folders += 1
        self._children(path, target)
        self._keep(target, st)  # after its content: writing into it changed its dates

    def _children(self, path: Path, target: Path) -> None:
        try:
            children = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            self.report.failed.append(
                Problem(self._shown(path), f"its list of files cannot be read ({_why(exc)}).")
            )
            children = []
        for child in children:
            try:
                child_st = child.stat(follow_symlinks=False)
            except OSError as exc:
                self.report.failed.append(Problem(self._shown(Path(child.path)), _why(exc)))
                continue
            self._entry(Path(child.path), child_st, target)

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
        self.poured = 0
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self._written(exc)
            raise DeviceError(f"{target} cannot be written ({_why(exc)}).") from exc
        try:
            try:
                source = self.reader(path)
            except OSError as exc:
                raise _ReadFailed(exc) from exc
            try:
                self._pour(source, fd)
            finally:
                source.close()
            self._keep_fd(fd, st)
        except _ReadFailed as failed:
            os.close(fd)
            target.unlink(missing_ok=True)
            self.progress.add(-self.poured)
            self.progress.adjust_total(-st.st_size)
            self.report.failed.append(
                Problem(
                    self._shown(path),
                    f"it cannot be read ({_why(failed.error)}); it was not copied.",
                )
            )
            return
        except BaseException as exc:
            os.close(fd)
            target.unlink(missing_ok=True)
            self.progress.add(-self.poured)
            if isinstance(exc, OSError):
                if exc.errno == errno.EFBIG:  # FAT: no file over 4 GiB
                    self.progress.adjust_total(-st.st_size)
                    self.report.failed.append(
                        Problem(
                            self._shown(path),
                            "it is too large for the destination's filesystem "
                            "(FAT holds files of at most 4 GiB).",
                        )
                    )
                    return
                self._written(exc)
                raise DeviceError(f"{target} cannot be written ({_why(exc)}).") from exc
            raise
        os.close(fd)
        self.report.files += 1
        self.report.bytes += self.poured

    def _pour(self, source: Readable, fd: int) -> None:
        """Copy `source` into `fd` in large reads; all-zero reads become holes."""
        view = memoryview(self.buffer)
        hole = False
        kicked = 0  # bytes of the file handed to the disk's writeback so far
        while True:
            self._check_stop()
            got = _read_into(source, view)
            if not got:
                break
            piece = view[:got]
            if piece == self.zeros[:got]:
                os.lseek(fd, got, os.SEEK_CUR)
                hole = True
            else:
                written = 0
                while written < got:
                    written += os.write(fd, piece[written:])
                hole = False
            self.poured += got
            if self.poured - kicked >= WRITEBACK:
                _write_back(fd, kicked, self.poured - kicked)
                kicked = self.poured
            self.progress.add(got)
            self.progress.tick()
        if hole:
            os.ftruncate(fd, self.poured)
        if self.poured > kicked and self.poured >= WRITEBACK:
            _write_back(fd, kicked, self.poured - kicked)

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
        """A write that failed because the destination is full stops the whole job."""
        if exc.errno in FULL:
            raise DestinationFull(
                f"The destination {self.dest} is full: {self.report.files} file(s) "
                f"({human_size(self.report.bytes)}) were copied and stay there; the file "
                "being copied was removed.",
                self.report,
            ) from exc


class _ReadFailed(Exception):
    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


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

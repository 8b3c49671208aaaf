"""Where a repository keeps its bytes: a `Store` of keys, and `LocalStore`, a folder.

A key is a '/'-separated relative path ("repo.json", "chunks/ab/cd/<hash>",
"images/NAME/manifest.json"); a "folder" is a key prefix that ends in '/'. The repository
(repo/repository.py) reads and writes only through this interface, so a store on a web
server (read-only) or in an S3 bucket is one new module that implements `Store`.

The contract every store keeps (tests/unit/repo/test_store.py runs it on each):
- a missing key raises FileNotFoundError; any other failure an OSError with its errno
  (ENOSPC, EROFS, EACCES, EIO...), which the repository turns into a user sentence;
- `put` makes the whole value appear at once or not at all (a reader never sees half of
  it); `durable=True` also makes it survive a power cut before `put` returns, while the
  values written with `durable=False` are made durable together by `sync()`;
- `list` and `folders` never show what a write or delete stopped half-way left behind,
  and `discard_partial_writes` removes it.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import errno
import mmap
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar, Protocol

from appliance.disk.usage import filesystem_type

DELETING = ".deleting-"  # LocalStore: a folder being deleted (hidden from listings)
# LocalStore: the one folder where a value is written before it is renamed into place, so a
# job's start clears what killed writers left by listing it alone: finding them among the
# chunks' 65,536 folders took 5.1 s on a cold cache here for a repository of 131,000 chunks
# (0.49 s warm), at the start of every save, and a spinning disk seeks for each folder.
PARTIAL = ".partial/"
# Filesystems where syncfs() does not reach the server's disk (sshfs and SMB send no flush
# for it): there LocalStore fsyncs each value written since the last sync() instead.
SYNC_EACH = ("fuse.sshfs", "cifs", "smb3")
# Filesystems on a local disk where a chunk file is written with O_DIRECT from a buffer of
# the writing thread: the kernel's copy of every byte into the page cache was 46 % of the
# CPU samples of a save of already-compressed data (2.2 GB written), and that save went from
# 4.00 to 3.57 s (medians of five interleaved pairs); a save bound by compression did not
# move. Elsewhere (tmpfs, FUSE, network filesystems) the writes go through the page cache,
# and so on FAT and exFAT (a stick's usual filesystems): their drivers (Debian 12's kernel)
# take no direct write that makes a file longer, and the kernel then writes it through the
# page cache and waits until it is on the disk, so each chunk file would wait on the stick.
DIRECT_FS = ("ext4", "ext3", "ext2", "xfs", "btrfs", "f2fs")
# Where a file is read with O_DIRECT (the chunks a save reads back): those, FAT and exFAT too.
DIRECT_READ_FS = (*DIRECT_FS, "exfat", "vfat")
DIRECT_MIN = 64 * 1024  # smaller values (the manifest, indexes, small chunks) are buffered
DIRECT_ALIGN = 4096  # a direct write's offset, length and buffer: any disk's logical sector


class Store(Protocol):
    """The keys of one repository. Only what the repository needs, nothing of files."""

    @property
    def where(self) -> str:
        """Where the store is, for messages: a folder, a URL."""
        ...

    def get(self, key: str) -> bytes:
        """The whole value."""
        ...

    def read_into(self, key: str, buffer: bytearray | mmap.mmap) -> int:
        """At most len(buffer) bytes of the value into `buffer` (no allocation per read:
        a save reads back many 4 MiB chunks); how many."""
        ...

    def head(self, key: str, length: int) -> tuple[bytes, int]:
        """The value's first `length` bytes and its whole size."""
        ...

    def size(self, key: str) -> int: ...

    def exists(self, key: str) -> bool: ...

    def put(self, key: str, data: bytes | memoryview, *, durable: bool) -> None:
        """Store `data` under `key` (replacing a value), whole or not at all."""
        ...

    def append(self, key: str, data: bytes) -> None:
        """Add `data` at the end of the value (made when missing): a log."""
        ...

    def list(self, prefix: str) -> Iterator[str]:
        """Every key under the folder `prefix` (and its sub-folders), in no set order."""
        ...

    def folders(self, prefix: str) -> builtins.list[str]:
        """The names of the folders right under `prefix` ([] when it holds none)."""
        ...

    def delete(self, key: str) -> None:
        """Remove a key; a key that is already gone is no error."""
        ...

    def delete_folder(self, prefix: str) -> None:
        """Remove every key under `prefix`. Stopped half-way, it must not leave what looks
        like part of the folder (LocalStore: one rename to a hidden name first)."""
        ...

    def discard_partial_writes(self, prefix: str) -> int:
        """Remove what stopped writes and deletes left under `prefix`; how many writes."""
        ...

    def sync(self) -> None:
        """Make every value written so far durable."""
        ...

    def free_bytes(self) -> int | None:
        """Room left for new values; None when the store cannot say."""
        ...


class ReadOnlyWrites:
    """The write side of a store that is never written (a web server, a multicast stream):
    each write raises EROFS with the store's `refusal`."""

    refusal: ClassVar[str] = "the store is read-only"

    def _no(self, key: str) -> OSError:
        return OSError(errno.EROFS, self.refusal, key)

    def put(self, key: str, data: bytes | memoryview, *, durable: bool) -> None:
        raise self._no(key)

    def append(self, key: str, data: bytes) -> None:
        raise self._no(key)

    def delete(self, key: str) -> None:
        raise self._no(key)

    def delete_folder(self, prefix: str) -> None:
        raise self._no(prefix)

    def discard_partial_writes(self, prefix: str) -> int:
        return 0  # nothing is ever written there


def check_key(key: str) -> str:
    """A key stays inside its store: relative, no empty, '.' or '..' part."""
    if not key or key[0] == "/" or "//" in key or "/./" in f"/{key}/" or "/../" in f"/{key}/":
        raise ValueError(f"{key!r} is not a key of a store")
    return key


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (FAT over FUSE, SMB) cannot fsync a folder
    finally:
        os.close(fd)


def write_all(fd: int, parts: Sequence[bytes | memoryview]) -> None:
    """Write every part, in order, with writev (again for what a short write left)."""
    views = [memoryview(part).cast("B") for part in parts if len(part)]
    while views:
        done = os.writev(fd, views)
        while views and done >= len(views[0]):
            done -= len(views.pop(0))
        if done and views:
            views[0] = views[0][done:]


def write_file_durably(path: Path, data: bytes | memoryview) -> None:
    """Write to a temporary name, fsync, rename over `path`, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def syncfs(folder: str | os.PathLike[str]) -> None:
    """Flush every file of the filesystem that holds `folder` to stable storage."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


class LocalStore:
    """A folder on this machine: a key is a file below it.

    A value written without `durable` goes to a temporary file in PARTIAL
    (".NAME.PID.THREAD.tmp", hidden from listings) and is renamed into place: no fsync per
    chunk, one syncfs() makes them all durable. A durable value is fsynced before its rename
    and its folder after. Folders are made on the first write into them (remembered: chunk
    writes are the hot path).
    """

    def __init__(self, root: Path) -> None:
        # absolute: a child process, or a FUSE view (libfuse changes to "/"), reads it too
        self.root = Path(os.path.abspath(root))
        self._base = os.fspath(self.root).rstrip("/") or ""
        self._partial = f"{self._base}/{PARTIAL}".rstrip("/")  # where values are written
        self._made_dirs: set[str] = set()
        self._sync_each: bool | None = None  # decided at the first write (SYNC_EACH)
        self._unsynced: builtins.list[str] = []
        self._direct: bool | None = None  # decided at the first large write (DIRECT_FS)
        self._direct_reads: bool | None = None  # decided at the first aligned read_into
        self._buffers = threading.local()  # each writing thread's aligned buffer

    @property
    def where(self) -> str:
        return str(self.root)

    def path(self, key: str) -> Path:
        """The file that holds `key`."""
        return self.root / check_key(key)

    def _file(self, key: str) -> str:
        return f"{self._base}/{check_key(key)}"

    def get(self, key: str) -> bytes:
        with open(self._file(key), "rb") as handle:
            return handle.read()

    def read_into(self, key: str, buffer: bytearray | mmap.mmap) -> int:
        """Into an aligned buffer (an mmap of whole DIRECT_ALIGN blocks) on a local disk's
        filesystem with O_DIRECT: a save reads back every chunk it reuses, and through the
        page cache that took twice as long (the kernel's readahead and copy of each file)."""
        if isinstance(buffer, mmap.mmap) and len(buffer) % DIRECT_ALIGN == 0:
            if self._direct_reads is None:
                self._direct_reads = filesystem_type(self.root) in DIRECT_READ_FS
            if self._direct_reads:
                got = self._read_direct(self._file(key), buffer)
                if got is not None:
                    return got
        return self.read_cached_into(key, buffer)

    def read_cached_into(self, key: str, buffer: bytearray | mmap.mmap) -> int:
        """`read_into` through the page cache, with the kernel's readahead: how a restore
        reads its chunks. With O_DIRECT, restores of the bench disk whose chunks shared the
        target's disk took 1.07x as long (ten interleaved pairs)."""
        with open(self._file(key), "rb", buffering=0) as handle:
            return handle.readinto(buffer) or 0

    def _read_direct(self, path: str, buffer: mmap.mmap) -> int | None:
        """The file's bytes read with O_DIRECT, in whole blocks until its end; None where the
        filesystem refuses (then never again for this store)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECT)
            try:
                with memoryview(buffer) as view:
                    pos = 0
                    while pos < len(view):
                        got = os.preadv(fd, [view[pos:]], pos)
                        pos += got
                        if got == 0 or pos % DIRECT_ALIGN:
                            break  # the end of the file
                return pos
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._direct_reads = False
            return None

    def head(self, key: str, length: int) -> tuple[bytes, int]:
        with open(self._file(key), "rb") as handle:
            return handle.read(length), os.fstat(handle.fileno()).st_size

    def size(self, key: str) -> int:
        return os.stat(self._file(key)).st_size

    def exists(self, key: str) -> bool:
        return os.path.exists(self._file(key))

    def put(self, key: str, data: bytes | memoryview, *, durable: bool) -> None:
        path = self._file(key)
        folder = path.rpartition("/")[0]
        if durable:
            os.makedirs(folder, exist_ok=True)  # a deleted image's folder may be made again
            write_file_durably(Path(path), data)
            return
        self.put_parts(key, (data,))

    def put_parts(self, key: str, parts: Sequence[bytes | memoryview]) -> None:
        """`put` (not durable) of the parts one after the other, written with one writev:
        a chunk's header and payload need not be joined into a copy first."""
        path = self._file(key)
        folder, _, name = path.rpartition("/")
        tmp = f"{self._partial}/.{name}.{os.getpid()}.{threading.get_native_id()}.tmp"
        try:
            for made in (self._partial, folder):
                if made not in self._made_dirs:
                    os.makedirs(made, exist_ok=True)
                    self._made_dirs.add(made)
            if not self._write_direct(tmp, parts):
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
                try:
                    write_all(fd, parts)
                    # start writing it to the disk now and let its pages go once written:
                    # the disk works during the save instead of in its final sync (0.5 s)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)
            os.replace(tmp, path)
            if self._sync_each is None:
                self._sync_each = filesystem_type(self.root) in SYNC_EACH
            if self._sync_each:
                self._unsynced.append(path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _write_direct(self, tmp: str, parts: Sequence[bytes | memoryview]) -> bool:
        """Write `parts` to the new file `tmp` with O_DIRECT (see DIRECT_FS): gathered into
        this thread's aligned buffer, written in whole DIRECT_ALIGN blocks, then cut to its
        length. False where that cannot be done: the caller then writes `tmp` afresh."""
        total = sum(len(part) for part in parts)
        if total < DIRECT_MIN or self._direct is False:
            return False
        if self._direct is None:
            self._direct = filesystem_type(self.root) in DIRECT_FS
            if not self._direct:
                return False
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_DIRECT
            fd = os.open(tmp, flags, 0o666)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._direct = False  # this filesystem refuses direct writes after all
            return False
        try:
            padded = -(-total // DIRECT_ALIGN) * DIRECT_ALIGN
            buf = getattr(self._buffers, "direct", None)
            if buf is None or len(buf) < padded:
                if buf is not None:
                    buf.close()
                buf = self._buffers.direct = mmap.mmap(
                    -1, padded, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                )
            with memoryview(buf) as view:
                pos = 0
                for part in parts:
                    view[pos : pos + len(part)] = part
                    pos += len(part)
                view[pos:padded] = bytes(padded - pos)
                done = 0
                while done < padded:
                    done += os.pwrite(fd, view[done:padded], done)
            os.ftruncate(fd, total)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._direct = False  # an alignment this disk does not take: buffered from now
            return False  # the caller writes the file again, through the page cache
        finally:
            os.close(fd)
        return True

    def append(self, key: str, data: bytes) -> None:
        # no folder is made: a log line written before the image's first file is dropped
        with open(self._file(key), "ab") as handle:
            handle.write(data)

    def list(self, prefix: str) -> Iterator[str]:
        top = self._folder(prefix)
        for folder, subs, files in os.walk(top):
            subs[:] = [s for s in subs if not s.startswith(".")]
            rel = folder[len(self._base) + 1 :]
            for name in files:
                if not name.startswith("."):
                    yield f"{rel}/{name}"

    def folders(self, prefix: str) -> builtins.list[str]:
        try:
            with os.scandir(self._folder(prefix)) as entries:
                return [e.name for e in entries if not e.name.startswith(".") and e.is_dir()]
        except FileNotFoundError:
            return []

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._file(key))

    def delete_folder(self, prefix: str) -> None:
        """The folder is first renamed to a hidden name (one atomic step) and fsynced, so a
        delete that is stopped half-way leaves no half folder behind;
        discard_partial_writes() removes such leftovers."""
        folder = self._folder(prefix)
        parent, _, name = folder.rpartition("/")
        doomed = f"{parent}/{DELETING}{name}"
        os.replace(folder, doomed)
        fsync_dir(parent)
        self._made_dirs = {d for d in self._made_dirs if not f"{d}/".startswith(f"{folder}/")}
        shutil.rmtree(doomed, ignore_errors=True)

    def discard_partial_writes(self, prefix: str) -> int:
        """Temporary files of killed writers (counted) and half-deleted folders."""
        count = 0
        for folder, subs, files in os.walk(self._folder(prefix)):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        os.unlink(f"{folder}/{name}")
                        count += 1
            for name in [s for s in subs if s.startswith(DELETING)]:
                shutil.rmtree(f"{folder}/{name}", ignore_errors=True)
                subs.remove(name)
        return count

    def sync(self) -> None:
        syncfs(self.root)
        pending, self._unsynced = self._unsynced, []
        for path in pending:  # a network filesystem: each file flushed on the server
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # removed since (a gc, a delete)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def free_bytes(self) -> int | None:
        stat = os.statvfs(self.root)
        return stat.f_bavail * stat.f_frsize

    def _folder(self, prefix: str) -> str:
        return self._file(prefix.rstrip("/"))

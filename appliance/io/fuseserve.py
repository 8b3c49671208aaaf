"""Files served through FUSE (libfuse3, through mfusepy): the one place the engine talks to
FUSE. The copy-on-write view (io/cowview.py) and the read-only image view (io/imageview.py)
each hand it their files; it serves them in one folder until the folder is unmounted.

libfuse3 serves requests on several threads (the views lock what they share), lets the
kernel ask for up to 1 MiB in one read, and mfusepy is imported here only, so the engine
imports without libfuse. libfuse2 may be installed too (other programs use it): mfusepy
would pick it first, so libfuse3 is named before the import.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from appliance.errors import ApplianceError

#: the largest read the kernel hands the view in one request (libfuse3 negotiates up to 1 MiB)
MAX_READ = 1 << 20
READAHEAD_KIB = 8192
#: requests the kernel keeps in flight at once (its default, 12, left a direct-I/O reader
#: of 4 MiB reads waiting on too few of the view's threads)
BACKGROUND = 64


class Pointer(Protocol):
    """Bytes held elsewhere, handed to libfuse by address (ctypes reads `_as_parameter_`)."""

    _as_parameter_: ctypes.c_void_p

    def __len__(self) -> int: ...


class ServedFile(Protocol):
    """A file of a view: its size and its bytes; `write` only when the view is writable."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes | ctypes.Array[ctypes.c_char] | Pointer:
        """The bytes (or a ctypes view of them or a pointer to them, handed to libfuse
        without a copy)."""
        ...


class WritableFile(ServedFile, Protocol):
    def write(self, data: bytes, offset: int) -> int:
        """Bytes written, or -1 past the end."""
        ...


def _fuse() -> Any:
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    import mfusepy

    return mfusepy


def serve(
    file: Callable[[str], ServedFile | None],
    names: Callable[[], list[str]],
    mountpoint: str,
    *,
    fsname: str,
    writable: bool = False,
    direct_io: bool = False,
    damage_log: str | None = None,
) -> None:
    """Serve MOUNTPOINT/NAME for each name of `names` until unmounted (blocks).

    A read that fails with an OSError answers with its errno; one that fails with our own
    error (a damaged chunk) answers EIO, and its sentence is added as a line to
    `damage_log`, so the job reading the view can say what was damaged instead of what
    its tool made of an I/O error. A read-only view refuses writes (EROFS). `direct_io`:
    reads bypass the kernel's page cache and land straight in the reader's buffer (one copy
    less, and less than half the kernel's time per byte); for a view whose reader caches
    what it needs itself (a loop device and the filesystem on it)."""
    fuse = _fuse()
    now = time.time()

    def found(path: str) -> ServedFile:
        served = file(path.lstrip("/"))
        if served is None:
            raise fuse.FuseOSError(errno.ENOENT)
        return served

    class Operations(fuse.Operations):  # type: ignore[name-defined,misc]
        use_ns = True

        def init_with_config(self, conn: Any, config: Any) -> None:
            if conn is not None:  # the kernel checks it against the mount's max_read
                conn.max_read = MAX_READ
                conn.max_readahead = READAHEAD_KIB << 10
                conn.max_background = BACKGROUND
                conn.congestion_threshold = BACKGROUND * 3 // 4

        def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
            stamp = int(now * 1e9)
            times = {"st_mtime": stamp, "st_ctime": stamp, "st_atime": stamp}
            if path == "/":
                return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_size": 0, **times}
            mode = 0o600 if writable else 0o400
            return {
                "st_mode": stat.S_IFREG | mode,
                "st_nlink": 1,
                "st_size": found(path).size,
                **times,
            }

        def readdir(self, path: str, fh: Any) -> list[str]:
            return [".", "..", *names()]

        def open(self, path: str, flags: int) -> int:
            found(path)
            if not writable and flags & (os.O_WRONLY | os.O_RDWR):
                raise fuse.FuseOSError(errno.EROFS)
            return 0

        def truncate(self, path: str, length: int, fh: Any = None) -> int:
            if not writable:
                raise fuse.FuseOSError(errno.EROFS)
            return 0  # the view keeps its size

        def flush(self, path: str, fh: Any) -> int:
            return 0

        def fsync(self, path: str, datasync: int, fh: Any) -> int:
            return 0

        def read(self, path: str, length: int, offset: int, fh: Any) -> Any:
            try:
                return found(path).read(offset, length)
            except OSError as exc:
                raise fuse.FuseOSError(exc.errno or errno.EIO) from exc
            except ApplianceError as exc:
                if damage_log is not None:
                    note_damage(damage_log, str(exc))
                raise fuse.FuseOSError(errno.EIO) from exc

        def write(self, path: str, data: bytes, offset: int, fh: Any) -> int:
            served = found(path)
            if not writable or not hasattr(served, "write"):
                raise fuse.FuseOSError(errno.EROFS)
            done: int = served.write(data, offset)
            if done < 0:
                raise fuse.FuseOSError(errno.ENOSPC)
            return done

    threading.Thread(
        target=widen_readahead, args=(mountpoint,), name="readahead", daemon=True
    ).start()
    options: dict[str, Any] = {"max_read": MAX_READ}
    if not writable:
        options["ro"] = True
    if direct_io:
        options["direct_io"] = True
    fuse.FUSE(Operations(), mountpoint, foreground=True, nothreads=False, fsname=fsname, **options)


_NOTED = threading.Lock()


def note_damage(log: str, sentence: str) -> None:
    """Add one damaged read's sentence to the view's damage log (once per sentence)."""
    line = " ".join(sentence.split()) + "\n"
    with _NOTED, open(log, "a+", encoding="utf-8") as handle:
        handle.seek(0)
        if line not in handle.readlines():
            handle.write(line)


def read_damage(log: str) -> list[str]:
    """The sentences of a view's damage log, [] when nothing damaged was read."""
    try:
        with open(log, encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip()]
    except FileNotFoundError:
        return []


def widen_readahead(mountpoint: str, seconds: float = 20.0) -> None:
    """Once the view is mounted, let the kernel read ahead up to READAHEAD_KIB of a file in
    requests of up to 1 MiB (its default, 128 KiB, makes eight times as many requests)."""
    deadline = time.monotonic() + seconds
    while not os.path.ismount(mountpoint):
        if time.monotonic() > deadline:
            return
        time.sleep(0.02)
    dev = os.stat(mountpoint).st_dev
    knob = f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"
    try:
        with open(knob, "w") as handle:
            handle.write(str(READAHEAD_KIB))
    except OSError:
        pass  # not root, or no such knob: the default read-ahead still works


def unmount_with_parent(parent: int, mountpoint: str) -> None:
    """Unmount the view once the job that started it is gone (then serve() returns): a job
    killed with SIGKILL cannot unmount its views, and nothing else would. A reader still
    using the view keeps it busy until it ends."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        while True:  # until the process ends: it may still be mounting
            if os.path.ismount(mountpoint):
                subprocess.run(["umount", mountpoint], capture_output=True, check=False)
            time.sleep(0.5)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()

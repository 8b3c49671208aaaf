"""A copy-on-write view: a file that reads as a partition (of a disk, or of a saved image)
and takes writes into a sparse overlay file, so a filesystem can be shrunk without a byte
of its source being written.

The kernel here has no device-mapper (the live ISO's has, but one mechanism is easier to
prove than two), so the view is a FUSE file served by this module in a child process:

    python -m appliance.cowview --mount DIR --overlay FILE --size N
        (--device PATH --offset N | --repo DIR (--image NAME --region NAME | --index FILE))

`CowView` starts it, waits for DIR/disk to appear, and unmounts it when done.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from appliance.errors import DeviceError

if TYPE_CHECKING:
    from appliance.manifest import Index

GRANULE = 4096
NAME = "disk"
INDEX_WAIT = 600.0  # seconds a read of a save's view waits for the region's index file


class Base(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes: ...


class DeviceBase:
    """A byte range of a block device or file, opened read-only."""

    def __init__(self, path: str, offset: int, size: int) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.offset = offset
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, self.offset + offset)


class ImageBase:
    """A region of a saved image, decoded (and hash-checked) chunk by chunk.

    The region is named in a complete image (`image` and `region`), or given by the file of
    its index (`index_file`, `size` bytes): a save proves a region before its image is
    complete, and mounts the view while the region's bytes still move, so the index file is
    read at the first read of the view, once it exists.
    """

    def __init__(self, repo: str, image: str | None = None, region: str | None = None, *,
                 index_file: str | None = None, size: int = 0) -> None:
        from appliance.chunkfmt import Decoder
        from appliance.jobs.imageread import load_image
        from appliance.repo import Repository

        self.index_file = index_file
        self._index: Index | None = None
        if index_file is not None:
            self.repo = Repository.open(repo)
            self.size = size
        else:
            assert image is not None and region is not None
            loaded = load_image(Repository.open(repo), image)
            self.repo = loaded.repo
            self._index = loaded.indexes[region]
            self.size = self._index.size
        self.decoder = Decoder()
        self.cache: OrderedDict[int, bytes] = OrderedDict()

    @property
    def index(self) -> Index:
        if self._index is None:
            from appliance.manifest import Index

            assert self.index_file is not None
            deadline = time.monotonic() + INDEX_WAIT
            while not os.path.exists(self.index_file):
                if time.monotonic() > deadline:
                    raise OSError(errno.EIO, f"no index at {self.index_file}")
                time.sleep(0.01)
            with open(self.index_file, "rb") as handle:
                self._index = Index.decode(handle.read(), self.index_file)
        return self._index

    def window(self, number: int) -> bytes:
        if number in self.cache:
            self.cache.move_to_end(number)
            return self.cache[number]
        win = self.index.window
        length = min(win, self.size - number * win)
        name = self.index.chunks[number] if number < len(self.index.chunks) else None
        data = bytes(length) if name is None else self.decoder.decode(
            self.repo.get_chunk(name), name, length)
        self.cache[number] = data
        if len(self.cache) > 8:
            self.cache.popitem(last=False)
        return data

    def read(self, offset: int, length: int) -> bytes:
        out = bytearray()
        win = self.index.window
        while length > 0:
            number, within = divmod(offset, win)
            piece = self.window(number)[within:within + length]
            if not piece:
                break
            out += piece
            offset += len(piece)
            length -= len(piece)
        return bytes(out)


def serve(base: Base, size: int, overlay_path: str, mountpoint: str) -> None:
    """Serve DIR/disk until unmounted (blocks)."""
    import fuse  # fusepy; imported here so the engine imports without libfuse

    overlay = os.open(overlay_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.ftruncate(overlay, size)
    written = bytearray((size + GRANULE - 1) // GRANULE)
    lock = threading.Lock()
    now = time.time()

    class CowFile(fuse.Operations):  # type: ignore[misc]
        def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
            if path == "/":
                return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_size": 0,
                        "st_mtime": now, "st_ctime": now, "st_atime": now}
            if path == f"/{NAME}":
                return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1, "st_size": size,
                        "st_mtime": now, "st_ctime": now, "st_atime": now}
            raise fuse.FuseOSError(errno.ENOENT)

        def readdir(self, path: str, fh: Any) -> list[str]:
            return [".", "..", NAME]

        def open(self, path: str, flags: int) -> int:
            return 0

        def truncate(self, path: str, length: int, fh: Any = None) -> int:
            return 0  # the view keeps its size

        def flush(self, path: str, fh: Any) -> int:
            return 0

        def fsync(self, path: str, datasync: int, fh: Any) -> int:
            return 0

        def read(self, path: str, length: int, offset: int, fh: Any) -> bytes:
            length = max(0, min(length, size - offset))
            out = bytearray()
            pos, end = offset, offset + length
            with lock:
                while pos < end:
                    granule = pos // GRANULE
                    state = written[granule]
                    stop = pos
                    while stop < end and written[stop // GRANULE] == state:
                        stop = (stop // GRANULE + 1) * GRANULE
                    stop = min(stop, end)
                    if state:
                        out += os.pread(overlay, stop - pos, pos)
                    else:
                        out += base.read(pos, stop - pos)
                    pos = stop
            return bytes(out)

        def write(self, path: str, data: bytes, offset: int, fh: Any) -> int:
            end = min(offset + len(data), size)
            if offset >= size:
                raise fuse.FuseOSError(errno.ENOSPC)
            with lock:
                for granule in range(offset // GRANULE, (end - 1) // GRANULE + 1):
                    if written[granule]:
                        continue
                    g_start = granule * GRANULE
                    g_end = min(g_start + GRANULE, size)
                    if offset > g_start or end < g_end:  # partly covered: copy the rest first
                        os.pwrite(overlay, base.read(g_start, g_end - g_start), g_start)
                    written[granule] = 1
                os.pwrite(overlay, data[:end - offset], offset)
            return end - offset

    fuse.FUSE(CowFile(), mountpoint, foreground=True, nothreads=False, big_writes=True,
              max_read=131072, fsname="appliance-cow")


class CowView:
    """Context manager: a writable view (a file path) of a region that is never written."""

    def __init__(self, size: int, *, device: str | None = None, offset: int = 0,
                 repo: str | None = None, image: str | None = None,
                 region: str | None = None, index_file: str | None = None,
                 workdir: str | None = None, purpose: str = "for resizing") -> None:
        self.size = size
        self.purpose = purpose
        self.folder = Path(tempfile.mkdtemp(prefix="appliance-cow-",
                                            dir=workdir or os.environ.get("APPLIANCE_TMP",
                                                                          "/var/tmp")))
        self.mountpoint = self.folder / "view"
        self.mountpoint.mkdir()
        self.path = str(self.mountpoint / NAME)
        args = [sys.executable, "-m", "appliance.cowview", "--mount", str(self.mountpoint),
                "--overlay", str(self.folder / "overlay"), "--size", str(size)]
        if device is not None:
            args += ["--device", device, "--offset", str(offset)]
        elif index_file is not None:
            assert repo is not None
            args += ["--repo", repo, "--index", index_file]
        else:
            assert repo is not None and image is not None and region is not None
            args += ["--repo", repo, "--image", image, "--region", region]
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CowView:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode().strip()
                self.close()
                raise DeviceError(f"A copy-on-write view {self.purpose} could not be made"
                                  f"{': ' + err.splitlines()[-1] if err else ''}.")
            time.sleep(0.05)
        return self

    def close(self) -> None:
        if self.proc is not None:
            if os.path.ismount(self.mountpoint):
                subprocess.run(["umount", str(self.mountpoint)], capture_output=True)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        for path in (self.folder / "overlay", self.mountpoint, self.folder):
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="appliance.cowview")
    parser.add_argument("--mount", required=True)
    parser.add_argument("--overlay", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--device")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--repo")
    parser.add_argument("--image")
    parser.add_argument("--region")
    parser.add_argument("--index")
    args = parser.parse_args(argv)
    base: Base
    if args.device:
        base = DeviceBase(args.device, args.offset, args.size)
    elif args.index:
        base = ImageBase(args.repo, index_file=args.index, size=args.size)
    else:
        base = ImageBase(args.repo, args.image, args.region)
    serve(base, args.size, args.overlay, args.mount)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A copy-on-write view: a file that reads as a partition (of a disk, or of a saved image)
and takes writes into a sparse overlay file, so a filesystem can be shrunk without a byte
of its source being written.

The kernel here has no device-mapper (the live ISO's has, but one mechanism is easier to
prove than two), so the view is a FUSE file (io/fuseserve.py: libfuse3, several threads)
served by this module in a child process:

    python -m appliance.io.cowview --mount DIR --overlay FILE --size N
        (--device PATH --offset N | --repo LOCATION --image NAME --region NAME)
    python -m appliance.io.cowview --mount DIR --overlay FILE --size 0 --repo LOCATION
        --index-dir D    (a save's proofs: DIR/REGION reads the region of each index D/REGION.idx)

LOCATION is what `Repository.open` takes (`Repository.location`), so the child reads the
same store as its parent, whatever kind it is.

`CowView` starts it, waits for DIR/disk to appear, and unmounts it when done.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from types import TracebackType
from typing import Protocol

from appliance.disk.deadmounts import clear_dead
from appliance.errors import CorruptData, DeviceError
from appliance.io.fuseserve import read_damage, serve, unmount_with_parent

GRANULE = 4096
NAME = "disk"


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
    its index (`index_file`): a save proves a region before its image is complete.
    """

    def __init__(
        self,
        repo: str,
        image: str | None = None,
        region: str | None = None,
        *,
        index_file: str | None = None,
        cache: int = 8,
    ) -> None:
        from appliance.io.source import RepositorySource
        from appliance.repo.image import load_image
        from appliance.repo.manifest import Index
        from appliance.repo.repository import Repository

        if index_file is not None:
            with open(index_file, "rb") as handle:
                index = Index.decode(handle.read(), index_file)
            self.source = RepositorySource.from_index(Repository.open(repo), image or "", index)
            self.region = 0
        else:
            assert image is not None and region is not None
            loaded = load_image(Repository.open(repo), image)
            self.source = RepositorySource.from_image(loaded)
            self.region = [r.name for r in self.source.regions].index(region)
        self.size = self.source.regions[self.region].size
        self.win = self.source.regions[self.region].window
        self.cache: OrderedDict[int, bytes] = OrderedDict()
        self.cache_windows = cache

    def window(self, number: int) -> bytes:
        if number in self.cache:
            self.cache.move_to_end(number)
            return self.cache[number]
        data = self.source.read_window(self.region, number)
        if data is None:
            data = bytes(self.source.regions[self.region].length(number))
        self.cache[number] = data
        if len(self.cache) > self.cache_windows:
            self.cache.popitem(last=False)
        return data

    def read(self, offset: int, length: int) -> bytes:
        out = bytearray()
        win = self.win
        while length > 0:
            number, within = divmod(offset, win)
            piece = self.window(number)[within : within + length]
            if not piece:
                break
            out += piece
            offset += len(piece)
            length -= len(piece)
        return bytes(out)


class CowFile:
    """One file of a view: it reads as its base until a 4 KiB granule is written; written
    granules live in a sparse overlay file (made at the first write)."""

    def __init__(self, base: Base, size: int, overlay_path: str) -> None:
        self.base = base
        self.size = size
        self.overlay_path = overlay_path
        self.overlay: int | None = None
        # a byte per granule, 1 once written: anonymous memory, whose pages the kernel only
        # gives when first written (a bytearray of 64 MiB for a 256 GiB partition was all
        # resident, for a proof's fsck that writes nothing)
        self.written = mmap.mmap(-1, max(1, (size + GRANULE - 1) // GRANULE))
        self.lock = threading.Lock()

    def read(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.size - offset))
        written = self.written
        out = bytearray()
        pos, end = offset, offset + length
        with self.lock:
            while pos < end:
                state = written[pos // GRANULE]
                stop = pos
                while stop < end and written[stop // GRANULE] == state:
                    stop = (stop // GRANULE + 1) * GRANULE
                stop = min(stop, end)
                if state and self.overlay is not None:
                    out += os.pread(self.overlay, stop - pos, pos)
                else:
                    out += self.base.read(pos, stop - pos)
                pos = stop
        return bytes(out)

    def write(self, data: bytes, offset: int) -> int:
        """Bytes written, or -1 past the end."""
        size = self.size
        end = min(offset + len(data), size)
        if offset >= size:
            return -1
        with self.lock:
            if self.overlay is None:
                self.overlay = os.open(
                    self.overlay_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
                )
                os.ftruncate(self.overlay, size)
            for granule in range(offset // GRANULE, (end - 1) // GRANULE + 1):
                if self.written[granule]:
                    continue
                g_start = granule * GRANULE
                g_end = min(g_start + GRANULE, size)
                if offset > g_start or end < g_end:  # partly covered: copy the rest first
                    os.pwrite(self.overlay, self.base.read(g_start, g_end - g_start), g_start)
                self.written[granule] = 1
            os.pwrite(self.overlay, data[: end - offset], offset)
        return end - offset


class IndexFolder:
    """The files of a save's proof view: one per index file (REGION.idx) in a folder, which
    the save writes once that region is stored, and removes once it is proven."""

    def __init__(self, repo: str, folder: str, overlay: str) -> None:
        self.repo = repo
        self.folder = Path(folder)
        self.overlay = overlay
        self.files: dict[str, CowFile] = {}
        self.lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(path.stem for path in self.folder.glob("*.idx"))

    def file(self, name: str) -> CowFile | None:
        with self.lock:
            for gone in [n for n in self.files if not (self.folder / f"{n}.idx").exists()]:
                del self.files[gone]  # proven: free its cache
                with contextlib.suppress(OSError):
                    os.unlink(f"{self.overlay}.{gone}")
            found = self.files.get(name)
            index = self.folder / f"{name}.idx"
            if found is None and "/" not in name and index.exists():
                base = ImageBase(self.repo, index_file=str(index), cache=4)
                found = self.files[name] = CowFile(base, base.size, f"{self.overlay}.{name}")
            return found


class CowView:
    """Context manager: a writable view (a file path) of a region that is never written."""

    def __init__(
        self,
        size: int,
        *,
        device: str | None = None,
        offset: int = 0,
        repo: str | None = None,
        image: str | None = None,
        region: str | None = None,
        index_dir: str | None = None,
        workdir: str | None = None,
        purpose: str = "for resizing",
    ) -> None:
        self.size = size
        self.purpose = purpose
        where = workdir or os.environ.get("APPLIANCE_TMP", "/var/tmp")
        clear_dead(sorted(Path(where).glob("appliance-cow-*")), "view")  # killed jobs' views
        self.folder = Path(tempfile.mkdtemp(prefix="appliance-cow-", dir=where))
        self.mountpoint = self.folder / "view"
        self.mountpoint.mkdir()
        self.path = str(self.mountpoint / NAME)
        self.damage_log = str(self.folder / "damaged")
        args = [
            sys.executable,
            "-m",
            "appliance.io.cowview",
            "--parent",
            str(os.getpid()),
            "--mount",
            str(self.mountpoint),
            "--overlay",
            str(self.folder / "overlay"),
            "--size",
            str(size),
            "--damage-log",
            self.damage_log,
        ]
        if device is not None:
            args += ["--device", device, "--offset", str(offset)]
        elif index_dir is not None:  # a save's proofs: DIR/REGION for each REGION.idx
            assert repo is not None
            args += ["--repo", repo, "--index-dir", index_dir]
            self.path = str(self.mountpoint)
        else:
            assert repo is not None and image is not None and region is not None
            args += ["--repo", repo, "--image", image, "--region", region]
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CowView:
        from appliance.repo.keyring import handover  # an encrypted repository's keys

        extra_env, fds = handover()
        try:
            self.proc = subprocess.Popen(
                self.args,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env={**os.environ, **extra_env} if extra_env else None,
                pass_fds=fds,
            )
        finally:
            for fd in fds:
                os.close(fd)
        deadline = time.monotonic() + 20
        while not (
            os.path.ismount(self.mountpoint)
            if self.path == str(self.mountpoint)
            else os.path.exists(self.path)
        ):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                proc = self.proc
                self.close()  # first: a child that is still starting is stopped (or killed)
                err = (proc.stderr.read() if proc.stderr else b"").decode().strip()
                raise DeviceError(
                    f"A copy-on-write view {self.purpose} could not be made"
                    f"{': ' + err.splitlines()[-1] if err else ''}."
                )
            time.sleep(0.05)
        return self

    def damaged(self) -> list[str]:
        """What the view could not read from a damaged image (one sentence each)."""
        return read_damage(self.damage_log)

    def raise_if_damaged(self, cause: BaseException | None = None) -> None:
        """CorruptData naming what was damaged, when the view met damage: a tool's failure
        or a read error on this view (`cause`) was the image's damage, not the tool's or
        the target's."""
        said = self.damaged()
        if said:
            more = f" ({len(said) - 1} more damaged reads)" if len(said) > 1 else ""
            raise CorruptData(said[0] + more) from cause

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
        leftovers = (*self.folder.glob("overlay*"), Path(self.damage_log))
        for path in (*leftovers, self.mountpoint, self.folder):
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def remove_leftovers(args: argparse.Namespace) -> None:
    """The files of a view whose job is gone: its overlays, index folder and folders."""
    for path in Path(args.overlay).parent.glob(Path(args.overlay).name + "*"):
        with contextlib.suppress(OSError):
            path.unlink()
    if args.index_dir:
        shutil.rmtree(args.index_dir, ignore_errors=True)
    if args.damage_log:
        with contextlib.suppress(OSError):
            os.unlink(args.damage_log)
    for folder in (args.mount, os.path.dirname(args.mount)):
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only when empty


def give_back_windows() -> None:
    """Let glibc return each freed window (4 MiB) to the kernel at once. By default its
    threshold for that grows with the blocks freed, so windows decoded on libfuse's threads
    stayed in their arenas: the view of a proof's fsck of a 256 GiB ext4 grew to 150 MiB
    against 94 MiB for an 8 GiB one. The proof reads few windows; their page faults cost
    nothing that shows (a shrink, which reads many, keeps the default)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: fixed at 1 MiB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="appliance.io.cowview", allow_abbrev=False)
    parser.add_argument("--mount", required=True)
    parser.add_argument("--overlay", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--device")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--repo")
    parser.add_argument("--image")
    parser.add_argument("--region")
    parser.add_argument("--index-dir")
    parser.add_argument("--parent", type=int, help="the job's pid: unmount when it is gone")
    parser.add_argument("--damage-log", help="where the sentences of damaged reads go")
    args = parser.parse_args(argv)
    parent = args.parent or os.getppid()
    unmount_with_parent(parent, args.mount)
    try:
        if args.index_dir:  # a save's proof
            give_back_windows()
            folder = IndexFolder(args.repo, args.index_dir, args.overlay)
            serve(
                folder.file,
                folder.names,
                args.mount,
                fsname="appliance-cow",
                writable=True,
                damage_log=args.damage_log,
            )
            return 0
        base: Base
        if args.device:
            base = DeviceBase(args.device, args.offset, args.size)
        else:
            base = ImageBase(args.repo, args.image, args.region)
        one = CowFile(base, args.size, args.overlay)
        serve(
            lambda name: one if name == NAME else None,
            lambda: [NAME],
            args.mount,
            fsname="appliance-cow",
            writable=True,
            damage_log=args.damage_log,
        )
        return 0
    finally:
        if os.getppid() != parent:
            remove_leftovers(args)


if __name__ == "__main__":
    # Unmounted, the view has nothing left to finish: the job waits on this process's exit
    # (a save's last step), and the interpreter's own shutdown took 32 ms of it.
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

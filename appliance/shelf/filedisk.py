"""An image file as a read-only disk: a VM disk (.qcow2 .vhd .vhdx .vmdk .vdi, served raw by
shelf.vmdisk's RawView) or a plain raw image (.img .bin .iso), attached as a READ-ONLY loop
device whose partitions the kernel is told with partx (this kernel has no partition-table
parser, and loop devices never scan their tables). Every reader of disks then reads it as it
reads a disk: probe_disk, blkid, partclone's used-block maps, the clone's DiskSource.

    with FileDisk(Path("laptop.vhdx")) as disk:
        probe_disk(disk.node)

The loop device is marked autoclear and held open by this object: the kernel detaches it at
its last close, so it goes with the job that attached it even when that job is killed (the
raw view's daemon goes too: it has a death signal). `close()` drops the partitions, closes
the device (the kernel detaches it) and stops the raw view; it runs on every way out.

A compressed or zipped image cannot be read at any offset without reading all before it: it
gets one sentence (it is written byte for byte by `appliance write`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from appliance.errors import DeviceError, UnsupportedImage
from appliance.shelf import imagefile, vmdisk
from appliance.shelf.vmdisk import RawView
from appliance.tools import run

LOOP_CLR_FD = 0x4C01
LOOP_SET_STATUS64 = 0x4C04
LOOP_GET_STATUS64 = 0x4C05
LO_FLAGS_AUTOCLEAR = 4
LOOP_INFO64_SIZE = 232  # struct loop_info64
LO_FLAGS_AT = 52  # its lo_flags: after five u64 and three u32
GPT_MAGIC = b"EFI PART"
SECTOR_SIZES = (512, 4096)
DETACH_SECONDS = 10


def set_autoclear(fd: int) -> None:
    """Mark the loop device open on `fd` autoclear: the kernel detaches it at its last close."""
    info = bytearray(fcntl.ioctl(fd, LOOP_GET_STATUS64, bytes(LOOP_INFO64_SIZE)))
    flags = int.from_bytes(info[LO_FLAGS_AT : LO_FLAGS_AT + 4], "little")
    info[LO_FLAGS_AT : LO_FLAGS_AT + 4] = (flags | LO_FLAGS_AUTOCLEAR).to_bytes(4, "little")
    fcntl.ioctl(fd, LOOP_SET_STATUS64, bytes(info))


def sector_size_of(path: str) -> int:
    """The logical sector size the disk in `path` was made with: 4096 when its GPT header is
    at byte 4096 and not at 512 (a 4Kn disk's backup), else 512."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for size in SECTOR_SIZES:
            if os.pread(fd, len(GPT_MAGIC), size) == GPT_MAGIC:
                return size
    finally:
        os.close(fd)
    return SECTOR_SIZES[0]


class FileDisk:
    """Context manager: the disk in an image file as a read-only loop device (`node`)."""

    def __init__(self, file: Path, *, workdir: str | None = None) -> None:
        self.file = Path(file)
        self.workdir = workdir
        self.image = imagefile.probe(self.file)  # one sentence when it is no disk image
        if self.image.vm is None and not self.image.seekable:
            raise UnsupportedImage(
                f"{self.image.name} is a {self.image.describe()}: it cannot be read as a "
                "disk without reading it whole; write it byte for byte with `appliance "
                "write`, or decompress it first."
            )
        self.view: RawView | None = None
        self.node = ""
        self.fd: int | None = None

    @property
    def kind(self) -> str:
        """What the file is, as people say it: "VHDX VM disk", "raw image"."""
        return self.image.describe()

    @property
    def size(self) -> int:
        return int(self.image.size or 0)

    def __enter__(self) -> FileDisk:
        try:
            path = str(self.file)
            if self.image.vm is not None:
                self.view = RawView(self.file, fmt=self.image.vm, workdir=self.workdir)
                path = self.view.__enter__().path
            self._attach(path)
        except BaseException:
            self.close()
            raise
        return self

    def _attach(self, path: str) -> None:
        sector = sector_size_of(path)
        args = ["losetup", "--find", "--show", "--read-only"]
        if sector != SECTOR_SIZES[0]:
            args += ["--sector-size", str(sector)]
        self.node = run([*args, path], timeout=60).stdout.strip()
        try:
            self.fd = os.open(self.node, os.O_RDONLY | os.O_CLOEXEC)
            set_autoclear(self.fd)
        except OSError as exc:
            if self.fd is None:
                run(["losetup", "--detach", self.node], check=False, timeout=60)
            raise DeviceError(
                f"A read-only loop device for {self.file.name} cannot be set up: {exc.strerror}."
            ) from exc
        # a loop number may carry stale partitions of an earlier user that was killed
        run(["partx", "--delete", self.node], check=False, timeout=60)
        run(["partx", "--add", self.node], check=False, timeout=60)  # no table: none added

    def close(self) -> None:
        """Drop the partitions, close the device (the kernel detaches it), stop the view."""
        if self.node and self.fd is not None:
            run(["partx", "--delete", self.node], check=False, timeout=60)
        if self.fd is not None:
            fd, self.fd = self.fd, None
            with contextlib.suppress(OSError):  # at once when no one else has it open
                fcntl.ioctl(fd, LOOP_CLR_FD)
            os.close(fd)  # else at the last close: autoclear (never detach by name after)
            self._wait_detached()
        view, self.view = self.view, None
        if view is not None:
            view.close()

    def _wait_detached(self) -> None:
        """Until the kernel has let go of the file (udev's probes may hold the device open a
        moment longer), so that the raw view below it can be unmounted."""
        backing = Path("/sys/block") / Path(self.node).name / "loop" / "backing_file"
        deadline = time.monotonic() + DETACH_SECONDS
        while backing.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def describe_file(path: Path) -> str:
    """What restore --file calls a file: "VM disk file NAME (VHDX)", "raw image file NAME"."""
    fmt = vmdisk.vm_format(path)
    if fmt is not None:
        return f"VM disk file {path.name} ({vmdisk.NAMES.get(fmt, fmt)})"
    return f"raw image file {path.name}"

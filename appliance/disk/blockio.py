"""Raw block I/O: O_DIRECT reads and writes into page-aligned buffers, zeroing, flushing.

O_DIRECT needs the buffer, offset and length aligned to the device's logical sector; an
anonymous mmap is page-aligned, and every range the engine moves is sector-aligned.
Regular files (used by unit tests) fall back to buffered I/O when O_DIRECT is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import stat
import struct

from appliance.errors import DeviceError

BLKZEROOUT = 0x127F  # _IO(0x12, 127)
BLKFLSBUF = 0x1261  # _IO(0x12, 97)
BLKGETSIZE64 = 0x80081272


def aligned_buffer(size: int) -> mmap.mmap:
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def close_buffer(buf: mmap.mmap) -> None:
    """Give an aligned buffer back now; when a view of it is still held (by the traceback of
    a stop or an error on its way out), leave it to be freed with that view instead of
    raising BufferError over the error that is leaving."""
    with contextlib.suppress(BufferError):
        buf.close()


def open_direct(node: str, write: bool = False) -> int:
    """A file descriptor with O_DIRECT where the device allows it."""
    flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_CLOEXEC
    try:
        return os.open(node, flags | os.O_DIRECT)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            try:
                return os.open(node, flags)
            except OSError as exc2:
                raise device_error(node, exc2, write) from exc2
        raise device_error(node, exc, write) from exc


def device_error(node: str, exc: OSError, write: bool) -> DeviceError:
    if exc.errno in (errno.ENOENT, errno.ENXIO, errno.ENODEV):
        return DeviceError(f"The disk {node} is gone; was it unplugged?")
    if exc.errno == errno.EROFS or (write and exc.errno == errno.EACCES):
        return DeviceError(f"The disk {node} is write-protected.")
    if exc.errno == errno.EIO:
        return DeviceError(f"The disk {node} reported an input/output error.")
    if exc.errno == errno.ENOSPC:
        return DeviceError(f"The disk {node} is smaller than the data written to it.")
    return DeviceError(
        f"The disk {node} cannot be {'written' if write else 'read'}: {exc.strerror}."
    )


def size_of(fd: int) -> int:
    mode = os.fstat(fd).st_mode
    if stat.S_ISBLK(mode):
        buf = fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8)
        return int(struct.unpack("Q", buf)[0])
    return os.fstat(fd).st_size


def read_into(
    fd: int, view: memoryview, offset: int, sector: int, bad: list[tuple[int, int]]
) -> None:
    """Fill `view` from `offset`. Unreadable sectors read as zeros and are added to `bad`."""
    try:
        got = os.preadv(fd, [view], offset)
        if got == len(view):
            return
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
    # Slow path: a short read or an I/O error. Go sector by sector and keep what reads.
    pos = 0
    while pos < len(view):
        with view[pos : pos + sector] as piece:  # released even when a stop lands here
            try:
                got = os.preadv(fd, [piece], offset + pos)
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                got = -1
            size = len(piece)
            if got != size:
                piece[:] = bytes(size)
        if got != size:
            if bad and bad[-1][0] + bad[-1][1] == offset + pos:
                bad[-1] = (bad[-1][0], bad[-1][1] + size)
            else:
                bad.append((offset + pos, size))
        pos += size


def write_from(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        wrote = os.pwritev(fd, [view[done:]], offset + done)
        if wrote == 0:  # the end of a file or device: no room for the rest
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done += wrote


def zero_range(fd: int, offset: int, length: int, scratch: memoryview) -> None:
    """Make [offset, offset+length) read as zeros: BLKZEROOUT on a disk, else plain writes."""
    if stat.S_ISBLK(os.fstat(fd).st_mode):
        try:
            fcntl.ioctl(fd, BLKZEROOUT, struct.pack("QQ", offset, length))
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTTY):
                raise
    pos = 0
    while pos < length:
        step = min(len(scratch), length - pos)
        write_from(fd, scratch[:step], offset + pos)
        pos += step


def flush(fd: int) -> None:
    os.fsync(fd)
    if stat.S_ISBLK(os.fstat(fd).st_mode):
        with contextlib.suppress(OSError):  # not every driver has it; fsync already flushed
            fcntl.ioctl(fd, BLKFLSBUF, 0)

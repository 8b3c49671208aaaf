"""A Clonezilla image folder as an image source: one region per saved partition, read
window by window from its stream.

A partclone stream is read once, front to back: its header and bitmap when the source is
opened (they give the used ranges before anything is written), its blocks as windows are
asked for, in order (every block's checksum checked by the reader). A raw stream
(partclone.dd, or old Clonezilla's dd) is the partition's bytes, all of them used. Windows
asked for out of order reopen the stream from its start; the restore never does.

The boot area (LBA 0's boot code, the hidden data after the MBR) is not a region here: the
table comes from the folder's sfdisk dump, written by sfdisk for the target, and the restore
writes the boot files around it (appliance/jobs/shelfrestore.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO, Protocol, cast

from appliance.errors import CorruptData, ImageError
from appliance.io.source import SourceRegion
from appliance.io.windows import WINDOW
from appliance.shelf.clonezilla import ClonezillaImage, Disk, Partition
from appliance.shelf.partclone import PartcloneReader
from appliance.shelf.streams import open_stream


class _Cursor(Protocol):
    used: list[tuple[int, int]]
    position: int  # where the next window may start

    def fill(self, lo: int, out: memoryview) -> None: ...

    def close(self) -> None: ...


class _PartcloneCursor:
    """The blocks of a partclone stream, consumed in order."""

    def __init__(self, part: Partition, what: str) -> None:
        assert part.stream is not None
        self._stack = contextlib.ExitStack()
        stream = self._stack.enter_context(open_stream(part.stream.base, what))
        self.reader = PartcloneReader(cast(BinaryIO, stream), what)
        header = self.reader.header
        if header.device_size > part.size:
            self._stack.close()
            raise ImageError(
                f"The partclone image of {what} holds a filesystem of {header.device_size} "
                f"bytes, larger than its partition ({part.size} bytes) in the saved table."
            )
        self.used = self.reader.used_ranges()
        self._blocks: Iterator[tuple[int, bytes]] = self.reader.blocks()
        self._pending: tuple[int, bytes] | None = None
        self.position = 0  # where the next window may start

    def fill(self, lo: int, out: memoryview) -> None:
        hi = lo + len(out)
        while True:
            if self._pending is None:
                self._pending = next(self._blocks, None)
                if self._pending is None:
                    break
            offset, data = self._pending
            if offset >= hi:
                break
            end = offset + len(data)
            if end > lo:
                a, b = max(offset, lo), min(end, hi)
                out[a - lo : b - lo] = data[a - offset : b - offset]
            if end > hi:
                break
            self._pending = None
        self.position = hi

    def close(self) -> None:
        self._stack.close()


class _RawCursor:
    """A partition's bytes, as they follow one another in a raw stream."""

    def __init__(self, part: Partition, what: str) -> None:
        assert part.stream is not None
        self._what = what
        self._size = part.size
        self._stack = contextlib.ExitStack()
        self._stream = self._stack.enter_context(open_stream(part.stream.base, what))
        self.used = [(0, part.size)] if part.size else []
        self.position = 0

    def fill(self, lo: int, out: memoryview) -> None:
        while self.position < lo:  # skip forward
            skipped = self._stream.read(min(WINDOW, lo - self.position))
            if not skipped:
                break
            self.position += len(skipped)
        got = 0
        while got < len(out):
            count = self._stream.readinto(out[got:])
            if not count:
                raise CorruptData(
                    f"The raw stream of {self._what} ends at byte {self.position + got}, "
                    f"before the end of its partition ({self._size} bytes)."
                )
            got += count
        self.position += got

    def close(self) -> None:
        self._stack.close()


class ClonezillaSource:
    """The saved partitions of one disk of a Clonezilla image. Use it as a context manager:
    each partition's stream stays open from the plan to the end of the restore."""

    proves = "partclone checksums"

    def __init__(self, image: ClonezillaImage, disk: Disk) -> None:
        self.image = image
        self.disk = disk
        self.parts = [p for p in disk.partitions if p.stream is not None]
        self._cursors: dict[int, _Cursor] = {}
        self._regions: list[SourceRegion] = []
        try:
            for part in self.parts:
                cursor = self._open(part)
                self._regions.append(
                    SourceRegion(
                        f"p{part.number}",
                        part.number,
                        part.start,
                        part.size,
                        part.fstype,
                        tuple(cursor.used),
                        self.what(part),
                    )
                )
        except BaseException:
            self.close()
            raise

    def what(self, part: Partition) -> str:
        return f"partition {part.describe()} of Clonezilla image {self.image.name}"

    def _open(self, part: Partition) -> _Cursor:
        assert part.stream is not None
        index = self.parts.index(part)
        old = self._cursors.pop(index, None)
        if old is not None:
            old.close()
        cursor: _Cursor
        if part.stream.kind == "partclone":
            cursor = _PartcloneCursor(part, self.what(part))
        else:
            cursor = _RawCursor(part, self.what(part))
        self._cursors[index] = cursor
        return cursor

    @property
    def regions(self) -> list[SourceRegion]:
        return self._regions

    def read_window(self, region: int, number: int) -> bytes | None:
        """Window `number` of region `region`: its used bytes, zeros between them."""
        src = self._regions[region]
        lo = number * src.window
        length = src.length(number)
        cursor = self._cursors[region]
        if lo < cursor.position:  # backwards: read the stream again
            cursor = self._open(self.parts[region])
        buf = bytearray(length)
        cursor.fill(lo, memoryview(buf))
        return bytes(buf)

    def window_hash(self, region: int, number: int) -> str | None:
        return None

    def close(self) -> None:
        for cursor in self._cursors.values():
            cursor.close()
        self._cursors.clear()

    def __enter__(self) -> ClonezillaSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""Image sources: where restore, verify, clone and the copy-on-write view read a disk's
regions from, window by window.

A source has regions (the boot area "outside", then one per partition: where it starts,
its size, its filesystem and its used ranges) and reads any window of a region: its bytes,
or None when the window holds nothing (all zeros, or not stored). It also says what it can
prove of those bytes (`proves`): our repository names every window by its hash ("chunk
hashes"), a disk proves nothing.

Today there are two: `RepositorySource` (an image of our repository) and `DiskSource`
(another disk, for clone). A Clonezilla folder or a raw or VM image file is one more class
here with the same three members.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from appliance.disk.blockio import aligned_buffer, close_buffer, open_direct, read_into
from appliance.errors import CorruptData
from appliance.io.pipeline import PooledFetch, zero_unused
from appliance.io.windows import WINDOW, Window, window_length, windows
from appliance.repo.chunk import Decoder, file_buffer_size
from appliance.repo.image import LoadedImage
from appliance.repo.manifest import Index, Region
from appliance.repo.repository import Repository


@dataclass(frozen=True)
class SourceRegion:
    """One region of a source: the boot area (partition None) or a partition."""

    name: str  # "outside", "p1", ...
    partition: int | None
    start: int  # byte offset on the source disk
    size: int
    fstype: str | None
    used: tuple[tuple[int, int], ...]  # relative to the region start
    what: str  # for sentences: "partition 2 (ext4, root)"
    window: int = WINDOW

    @classmethod
    def of(cls, region: Region, used: list[tuple[int, int]], window: int = WINDOW) -> SourceRegion:
        return cls(
            region.name,
            region.partition,
            region.start,
            region.size,
            region.fstype,
            tuple(used),
            region.describe(),
            window,
        )

    def windows(self, number: int, base: int | None = None) -> Iterator[Window]:
        """This region's windows that hold used bytes; `number` is its index in the
        source's regions, `base` where it lands (its own start unless said)."""
        return windows(
            self.used,
            self.size,
            base=self.start if base is None else base,
            region=number,
            window=self.window,
        )

    def length(self, number: int) -> int:
        return window_length(number, self.size, self.window)


class ImageSource(Protocol):
    """Regions of windows of bytes, read one window at a time."""

    @property
    def proves(self) -> str:
        """What the source can prove of its bytes: "chunk hashes" or "nothing"."""
        ...

    @property
    def regions(self) -> list[SourceRegion]: ...

    def read_window(self, region: int, number: int) -> bytes | None:
        """Window `number` of region `region` (an index into `regions`); None when it is
        all zeros or not stored (a reader writes zeros at its used ranges)."""
        ...

    def window_hash(self, region: int, number: int) -> str | None:
        """The blake3 name the window's bytes must have, or None if the source cannot say."""
        ...


class RepositorySource:
    """An image of our repository: each window is a chunk, decoded and hash-checked as it is
    read. `fetch` and `decode` are the two halves of `read_window`, for the restore
    pipeline, which fetches in one thread and decodes in many."""

    proves = "chunk hashes"

    def __init__(
        self, repo: Repository, image: str, regions: list[SourceRegion], indexes: list[Index]
    ) -> None:
        self.repo = repo
        self.image = image
        self._regions = regions
        self.indexes = indexes
        self._local = threading.local()

    @classmethod
    def from_image(cls, loaded: LoadedImage) -> RepositorySource:
        regions = loaded.manifest.regions
        indexes = [loaded.indexes[r.name] for r in regions]
        return cls(
            loaded.repo,
            loaded.manifest.name,
            [SourceRegion.of(r, i.used, i.window) for r, i in zip(regions, indexes, strict=True)],
            indexes,
        )

    @classmethod
    def from_index(cls, repo: Repository, image: str, index: Index) -> RepositorySource:
        """One region given by its index alone (a save proves a region before its image is
        complete, so before there is a manifest to load)."""
        region = SourceRegion(
            index.region,
            None,
            0,
            index.size,
            None,
            tuple(index.used),
            f"region {index.region}",
            index.window,
        )
        return cls(repo, image, [region], [index])

    @property
    def regions(self) -> list[SourceRegion]:
        return self._regions

    def chunk(self, region: int, number: int) -> str | None:
        """The stored chunk of a window, None for an all-zero window (or past the index)."""
        chunks = self.indexes[region].chunks
        return chunks[number] if number < len(chunks) else None

    def fetch(self, name: str) -> bytes:
        return self.repo.fetch_chunk(name)  # opened (decrypted) by `decode`

    @property
    def fetchers(self) -> int:
        """How many chunks to fetch at once (more than one from a web server)."""
        return self.repo.read_parallelism

    @property
    def pooled(self) -> PooledFetch | None:
        """Chunks read into the restore pipeline's pooled buffers: a folder's on this
        machine; None where chunks come only through `fetch` (a server, a sealed
        repository, or a subclass with a `fetch` of its own, such as a stream's)."""
        if type(self).fetch is not RepositorySource.fetch or not self.repo.reads_chunks_into:
            return None
        largest = max((r.window for r in self._regions), default=WINDOW)  # an image's own
        return PooledFetch(self.repo.fetch_chunk_into, file_buffer_size(largest))

    def _decoder(self) -> Decoder:
        decoder: Decoder | None = getattr(self._local, "decoder", None)
        if decoder is None:
            decoder = self._local.decoder = Decoder(self.repo.chunk_name)
        return decoder

    def decode(self, region: int, name: str, length: int, blob: bytes | memoryview) -> bytes:
        """A fetched chunk's bytes, checked against its name; a damaged one names the region
        it holds."""
        try:
            return self._decoder().decode(self.repo.open_chunk(name, blob), name, length)
        except CorruptData as exc:
            raise self._damaged(region, name, exc) from exc

    def decode_into(
        self, region: int, name: str, length: int, blob: bytes | memoryview, out: memoryview
    ) -> None:
        """`decode`, written into `out` (a restore's write buffer)."""
        try:
            self._decoder().decode_into(self.repo.open_chunk(name, blob), name, length, out)
        except CorruptData as exc:
            raise self._damaged(region, name, exc) from exc

    def _damaged(self, region: int, name: str, exc: CorruptData) -> CorruptData:
        problem = self.repo.damaged_chunk(name, exc)
        return CorruptData(
            f"{problem} It holds data of {self._regions[region].what} of image {self.image}."
        )

    def read_window(self, region: int, number: int) -> bytes | None:
        name = self.chunk(region, number)
        if name is None:
            return None
        return self.decode(region, name, self._regions[region].length(number), self.fetch(name))

    def window_hash(self, region: int, number: int) -> str | None:
        name = self.chunk(region, number)
        if name is not None:
            return name
        return self.repo.zero_name(self._regions[region].length(number))


class DiskSource:
    """Another disk (clone's source), read with O_DIRECT and never written. Use it as a
    context manager: `fd` is open inside, for the byte pipelines."""

    proves = "nothing"

    def __init__(self, node: str, sector: int, regions: list[SourceRegion]) -> None:
        self.node = node
        self.sector = sector
        self._regions = regions
        self._fd: int | None = None
        self.bad: list[tuple[int, int]] = []  # unreadable byte ranges met (read as zeros)
        self._lock = threading.Lock()

    @property
    def regions(self) -> list[SourceRegion]:
        return self._regions

    @property
    def fd(self) -> int:
        with self._lock:
            if self._fd is None:
                self._fd = open_direct(self.node)
            return self._fd

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> DiskSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def read_window(self, region: int, number: int) -> bytes | None:
        """The window's used bytes (zeros between them); None when none of it is used."""
        src = self._regions[region]
        length = src.length(number)
        lo, hi = number * src.window, number * src.window + length
        used = [
            (max(start, lo) - lo, min(start + size, hi) - max(start, lo))
            for start, size in src.used
            if start < hi and start + size > lo
        ]
        if not used:
            return None
        buf = aligned_buffer(src.window)
        try:
            with memoryview(buf) as view:  # released on every way out: close() needs that
                for start, size in used:  # whole sectors, as O_DIRECT wants them
                    first = start // self.sector * self.sector
                    end = min(-(-(start + size) // self.sector) * self.sector, length)
                    with view[first:end] as piece:
                        read_into(self.fd, piece, src.start + lo + first, self.sector, self.bad)
                zero_unused(view, used, length)
                return bytes(view[:length])
        finally:
            close_buffer(buf)

    def window_hash(self, region: int, number: int) -> str | None:
        return None

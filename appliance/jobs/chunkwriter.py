"""Storing windows as chunks: the step every job that writes an image runs on its pool
(save, and import from another repository or another tool's image).

A window's blake3 (keyed, in an encrypted repository) names its chunk; an all-zero window is
not stored. A chunk already in the repository is reused only if it reads back as these bytes
(decompressed and hashed, once per job); a damaged stored copy is rewritten with the good
bytes and counted. `complete` is the last write of such a job: the manifest with its
figures, marked complete.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from appliance.io.windows import Window
from appliance.repo.chunk import Encoder
from appliance.repo.manifest import Manifest
from appliance.repo.records import SaveStats
from appliance.repo.repository import ReadBack, Repository


@dataclass
class Counters:
    """The job's running counts, shared by the pool's workers."""

    new_chunks: int = 0
    reused_chunks: int = 0
    zero_windows: int = 0
    new_bytes: int = 0
    repaired_chunks: int = 0  # stored chunks that did not read back and were rewritten
    lock: threading.Lock = field(default_factory=threading.Lock)


def complete(
    repo: Repository,
    manifest: Manifest,
    stats: Counters,
    started: float,
    log: Callable[[str], None],
    job: str,
    *,
    warnings: list[str],
    read_errors: Iterable[tuple[int, int]] = (),
) -> None:
    """Record the job's figures in the manifest and write it marked complete (every chunk
    and index is durable before this is called), then say so in the image's log."""
    manifest.stats = SaveStats(
        used_bytes=manifest.used_bytes,
        new_bytes=stats.new_bytes,
        new_chunks=stats.new_chunks,
        reused_chunks=stats.reused_chunks,
        zero_windows=stats.zero_windows,
        seconds=round(time.monotonic() - started, 3),
        read_errors=[(int(a), int(b)) for a, b in read_errors],
        repaired_chunks=stats.repaired_chunks,
        warnings=warnings,
    )
    manifest.complete = True
    manifest.finished = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    repo.write_file(repo.image_key(manifest.name, "manifest.json"), manifest.to_json().encode())
    log(
        f"{job} complete: {manifest.used_bytes} bytes used, {stats.new_chunks} new chunks "
        f"({stats.new_bytes} bytes), {stats.reused_chunks} already stored"
    )


class ChunkWriter:
    """`writer(win, data)` stores one window and records its chunk name in
    `chunks[win.region][win.number]` (None stays for an all-zero window)."""

    def __init__(
        self, repo: Repository, chunks: list[list[str | None]], level: int, stats: Counters
    ) -> None:
        self.repo = repo
        self.chunks = chunks
        self.level = level
        self.stats = stats
        self._local = threading.local()
        self._seen: set[str] = set()

    def _reader(self) -> ReadBack:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = ReadBack()
        assert isinstance(reader, ReadBack)
        return reader

    def __call__(self, win: Window, data: memoryview) -> None:
        stats = self.stats
        name = self.repo.chunk_name(data)
        if name == self.repo.zero_name(win.length):
            with stats.lock:
                stats.zero_windows += 1
            return
        self.chunks[win.region][win.number] = name
        with stats.lock:
            known = name in self._seen
            self._seen.add(name)
        if known:  # checked or written by this job already
            with stats.lock:
                stats.reused_chunks += 1
            return
        stored = self.repo.stored_chunk_state(name, win.length, self._reader())
        if stored == "same":  # a stored chunk is reused only if it reads back as these bytes
            with stats.lock:
                stats.reused_chunks += 1
            return
        encoder = getattr(self._local, "encoder", None)
        if encoder is None:
            encoder = self._local.encoder = Encoder(self.level)
        parts = encoder.encode_parts(data)
        self.repo.put_chunk(name, parts)  # also repairs a damaged stored copy
        with stats.lock:
            stats.new_chunks += 1
            stats.new_bytes += len(parts[0]) + len(parts[1])
            stats.repaired_chunks += 1 if stored == "damaged" else 0

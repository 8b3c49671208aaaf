"""Reading stored chunks back to prove them (a save reuses a stored chunk only if it reads
back as the window's bytes), and the v1 name of zero bytes."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import zstandard

from appliance.repo.chunk import HEADER, HEADER_SIZE, ZSTD, content_hash, header_ok
from appliance.repo.store import Store

WINDOW = 4 * 1024 * 1024

__all__ = ["ReadBack", "zero_chunk_name"]


@cache
def zero_chunk_name(length: int) -> str:
    """The v1 name of `length` zero bytes."""
    return content_hash(bytes(length))


class ReadBack:
    """Reads stored chunks back to prove them, into buffers of its own (one per thread: no
    4 MiB allocation per chunk), and checks the bytes against the chunk's name."""

    def __init__(self, window: int = WINDOW) -> None:
        self.dctx = zstandard.ZstdDecompressor()
        self.blob = bytearray(window + HEADER_SIZE + 1)  # one more: a longer file shows
        self.out = bytearray(window + 1)

    def state(
        self,
        store: Store,
        key: str,
        name: str,
        length: int,
        hasher: Callable[[bytes | memoryview], str] = content_hash,
    ) -> str:
        size = store.read_into(key, self.blob)
        return self.check(memoryview(self.blob)[:size], name, length, hasher)

    def check(
        self,
        blob: memoryview,
        name: str,
        length: int,
        hasher: Callable[[bytes | memoryview], str] = content_hash,
    ) -> str:
        """ "same" when the chunk file's bytes `blob` decode to the `length` bytes named
        `name`, else "damaged"."""
        if not header_ok(bytes(blob[:HEADER_SIZE]), len(blob)):
            return "damaged"
        payload = blob[HEADER_SIZE:]
        if HEADER.unpack_from(blob)[2] == ZSTD:
            try:
                back = self._decompress(payload, length + 1)
            except zstandard.ZstdError:
                return "damaged"
        else:
            back = payload
        return "same" if len(back) == length and hasher(back) == name else "damaged"

    def _decompress(self, payload: memoryview, limit: int) -> memoryview:
        """At most `limit` bytes of the frame into self.out."""
        view = memoryview(self.out)[:limit]
        done = 0
        with self.dctx.stream_reader(payload) as stream:
            while done < limit:
                got = stream.readinto(view[done:])
                if not got:
                    break
                done += got
        return view[:done]

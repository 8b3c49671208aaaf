"""One chunk on disk: a 16-byte header, then the payload (a zstd frame or the raw bytes).

Header: magic b"APCK", format version (1 byte), compression (1 byte: 0 raw, 1 zstd),
2 reserved zero bytes, payload length (8 bytes, little endian). The chunk's name is the
blake3 hash of the *uncompressed* bytes, so the name proves the content after decompression
(an encrypted repository's names are keyed: the hasher is the repository's `chunk_name`).
`ReadBack` reads a stored chunk back to prove it before a save reuses it.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import blake3
import zstandard

from appliance.errors import CorruptData
from appliance.repo.store import Store

MAGIC = b"APCK"
VERSION = 1
RAW = 0
ZSTD = 1
HEADER = struct.Struct("<4sBBxxQ")
HEADER_SIZE = HEADER.size  # 16
HASH_HEX_LEN = 64
READ_WINDOW = 4 * 1024 * 1024  # the repository's window (a ReadBack's buffers)


def file_buffer_size(window: int) -> int:
    """Bytes of an aligned buffer that holds any chunk file of a `window`-byte window and one
    byte more (a longer file shows), in whole 4 KiB blocks (so O_DIRECT can read into it:
    a save's ReadBack; a restore's pool reads through the page cache)."""
    return -(-(window + HEADER_SIZE + 1) // 4096) * 4096


def content_hash(data: bytes | memoryview) -> str:
    """The chunk name: blake3 of the uncompressed bytes, 64 hex digits."""
    return blake3.blake3(data).hexdigest()


@dataclass
class Encoder:
    """Compresses windows for storage. One per thread: zstd compressors are not thread-safe."""

    level: int = 3

    def __post_init__(self) -> None:
        self._cctx = zstandard.ZstdCompressor(
            level=self.level, write_checksum=False, write_content_size=True
        )

    def encode(self, data: bytes | memoryview) -> bytes:
        """Header + payload; stored raw when zstd does not make it smaller."""
        return b"".join(self.encode_parts(data))

    def encode_parts(self, data: bytes | memoryview) -> tuple[bytes, bytes | memoryview]:
        """`encode` as (header, payload), not joined: a raw payload is `data` itself (valid
        as long as the caller's buffer), so a store writes both without copying them."""
        packed = self._cctx.compress(data)
        if len(packed) >= len(data):
            return HEADER.pack(MAGIC, VERSION, RAW, len(data)), data
        return HEADER.pack(MAGIC, VERSION, ZSTD, len(packed)), packed


@dataclass
class Decoder:
    """Turns a chunk file's bytes back into the window's bytes. One per thread. `hasher`
    names chunks (an encrypted repository's is keyed: Repository.chunk_name)."""

    hasher: Callable[[bytes | memoryview], str] = content_hash

    def __post_init__(self) -> None:
        self._dctx = zstandard.ZstdDecompressor()

    def decode(self, blob: bytes | memoryview, name: str, expected_size: int) -> bytes:
        """The uncompressed bytes; CorruptData if the header, length or hash is wrong."""
        compression, payload = _payload(blob, name)
        if compression == RAW:
            data = bytes(payload)
        else:
            try:
                data = self._dctx.decompress(payload, max_output_size=expected_size)
            except zstandard.ZstdError as exc:
                raise CorruptData(f"Chunk {name} cannot be decompressed.") from exc
        if len(data) != expected_size or self.hasher(data) != name:
            raise CorruptData(f"Chunk {name} does not match its hash.")
        return data

    def decode_into(
        self, blob: bytes | memoryview, name: str, expected_size: int, out: memoryview
    ) -> None:
        """`decode`, written into `out[:expected_size]` (a restore's aligned write buffer):
        no buffer of its own per chunk, no second copy. CorruptData as `decode`."""
        compression, payload = _payload(blob, name)
        if len(out) < expected_size:
            raise ValueError("the buffer is smaller than the window")
        view = out[:expected_size]
        if compression == RAW:
            if len(payload) != expected_size:
                raise CorruptData(f"Chunk {name} does not match its hash.")
            view[:] = payload
        else:
            try:
                done = fill_from_frame(self._dctx, payload, view)
            except zstandard.ZstdError as exc:
                raise CorruptData(f"Chunk {name} cannot be decompressed.") from exc
            if done != expected_size:
                raise CorruptData(f"Chunk {name} does not match its hash.")
        if self.hasher(view) != name:
            raise CorruptData(f"Chunk {name} does not match its hash.")


def fill_from_frame(
    dctx: zstandard.ZstdDecompressor, frame: bytes | memoryview, view: memoryview
) -> int:
    """Decompress the zstd `frame` into `view`: how many bytes it filled, or -1 when the
    frame holds more than `view` takes (never written past it)."""
    done = 0
    with dctx.stream_reader(frame) as stream:
        while done < len(view):
            got = stream.readinto(view[done:])
            if not got:
                return done
            done += got
        return -1 if stream.read(1) else done


def _payload(blob: bytes | memoryview, name: str) -> tuple[int, memoryview]:
    """A chunk file's compression and payload, once its header and length are right."""
    if len(blob) < HEADER_SIZE:
        raise CorruptData(f"Chunk {name} is truncated ({len(blob)} bytes).")
    magic, version, compression, length = HEADER.unpack_from(blob)
    if magic != MAGIC or version != VERSION or compression not in (RAW, ZSTD):
        raise CorruptData(f"Chunk {name} has an unknown header.")
    if length != len(blob) - HEADER_SIZE:
        raise CorruptData(f"Chunk {name} is truncated or has extra bytes.")
    return compression, memoryview(blob)[HEADER_SIZE:]


def header_ok(head: bytes, file_size: int) -> bool:
    """Cheap check that a stored chunk file is whole: its header and length agree."""
    if len(head) < HEADER_SIZE:
        return False
    magic, version, compression, length = HEADER.unpack_from(head)
    return (
        magic == MAGIC
        and version == VERSION
        and compression in (RAW, ZSTD)
        and length == file_size - HEADER_SIZE
    )


@cache
def zero_chunk_name(length: int) -> str:
    """The v1 name of `length` zero bytes."""
    return content_hash(bytes(length))


class ReadBack:
    """Reads stored chunks back to prove them, into buffers of its own (one per thread: no
    4 MiB allocation per chunk), and checks the bytes against the chunk's name."""

    def __init__(self, window: int = READ_WINDOW) -> None:
        self.dctx = zstandard.ZstdDecompressor()
        # aligned (an mmap), so a folder on a local disk reads it with O_DIRECT
        # (store.LocalStore.read_into)
        size = file_buffer_size(window)
        self.blob = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
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
            back = memoryview(self.out)[:length]
            try:
                if fill_from_frame(self.dctx, payload, back) != length:
                    return "damaged"
            except zstandard.ZstdError:
                return "damaged"
        else:
            back = payload
        return "same" if len(back) == length and hasher(back) == name else "damaged"

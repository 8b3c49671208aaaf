"""The multicast stream: what `appliance cast send` pipes into udp-sender and every receiver
reads back from udp-receiver's stdout, front to back, writing as it goes.

The stream is a series of self-delimiting records:

    magic b"ACR1" | kind (1 byte) | key length (2 bytes LE) | body length (8 bytes LE) | key | body

Kinds, in the order they come:
- H, once: the head, a JSON object {"version": 1, "image": NAME, "http": URL or null} (the
  sender's repository over HTTP, where a receiver fetches what the stream lost);
- F: one file of the repository (key "repo.json", "images/NAME/manifest.json", the indexes);
- C: one chunk, key its blake3 name (64 hex digits), body the stored chunk bytes, in restore
  order (every window of every region, as the image lists them);
- E, last: {"chunks": N}, the number of C records sent.

Nothing in the stream is trusted: the manifest and indexes are checked by their hashes when
the image is loaded, every chunk by its name when it is decoded. A damaged record header is
skipped by looking for the next magic (`RecordReader.skipped` counts the bytes passed over);
what the stream lost is fetched over HTTP by the receiver.
"""

from __future__ import annotations

import json
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from appliance.io.windows import WINDOW
from appliance.repo.chunk import HASH_HEX_LEN, HEADER_SIZE

MAGIC = b"ACR1"
HEADER = struct.Struct("<4scHQ")
HEAD, FILE, CHUNK, END = b"H", b"F", b"C", b"E"
MAX_KEY = 1024
MAX_FILE = 256 * 1024 * 1024  # an index of a very large disk; a manifest is far smaller
MAX_CHUNK = WINDOW + HEADER_SIZE  # a window stored raw: it never grows larger
PIECE = 1024 * 1024  # bytes read from the pipe at a time
STREAM_VERSION = 1
LOOKAHEAD = 32  # records read past a wanted chunk before it is fetched over HTTP instead
CACHE_BYTES = 128 * 1024 * 1024  # chunks read ahead and kept, at most


def record(kind: bytes, key: str, body: bytes) -> bytes:
    """One record's bytes (small records; a chunk is written as header + body, see write)."""
    raw = key.encode("utf-8")
    return HEADER.pack(MAGIC, kind, len(raw), len(body)) + raw + body


def write_record(out: IO[bytes], kind: bytes, key: str, body: bytes) -> None:
    raw = key.encode("utf-8")
    out.write(HEADER.pack(MAGIC, kind, len(raw), len(body)) + raw)
    out.write(body)


def head_record(image: str, http: str | None) -> bytes:
    body = json.dumps({"version": STREAM_VERSION, "image": image, "http": http}).encode()
    return record(HEAD, "", body)


def end_record(chunks: int) -> bytes:
    return record(END, "", json.dumps({"chunks": chunks}).encode())


@dataclass(frozen=True)
class Record:
    kind: bytes
    key: str
    body: bytes


def _limit(kind: bytes) -> int:
    return {HEAD: 64 * 1024, FILE: MAX_FILE, CHUNK: MAX_CHUNK, END: 64 * 1024}.get(kind, -1)


class RecordReader:
    """Records from a byte stream (udp-receiver's stdout); a damaged header is skipped up to
    the next magic, and a stream cut short ends early (`complete` stays False)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._buf = bytearray()
        self._eof = False
        self.skipped = 0  # bytes passed over to find the next record
        self.complete = False  # the end record was read
        self.received = 0  # bytes read from the stream

    def _fill(self, want: int) -> bool:
        """At least `want` bytes in the buffer; False at the end of the stream."""
        while len(self._buf) < want and not self._eof:
            piece = self._raw.read(max(PIECE, want - len(self._buf)))
            if not piece:
                self._eof = True
                break
            self.received += len(piece)
            self._buf += piece
        return len(self._buf) >= want

    def _resync(self) -> None:
        """Drop the byte at the front and everything up to the next magic."""
        found = self._buf.find(MAGIC, 1)
        drop = found if found > 0 else max(1, len(self._buf) - len(MAGIC) + 1)
        self.skipped += drop
        del self._buf[:drop]

    def next(self) -> Record | None:
        """The next whole record; None at the end of the stream."""
        while self._fill(HEADER.size):
            magic, kind, key_len, body_len = HEADER.unpack_from(self._buf)
            if magic != MAGIC or key_len > MAX_KEY or body_len > _limit(kind):
                self._resync()
                continue
            size = HEADER.size + key_len + body_len
            if not self._fill(size):
                self.skipped += len(self._buf)
                self._buf.clear()
                return None
            try:
                key = bytes(self._buf[HEADER.size : HEADER.size + key_len]).decode("utf-8")
            except UnicodeDecodeError:
                self._resync()
                continue
            body = bytes(self._buf[HEADER.size + key_len : size])
            del self._buf[:size]
            if kind == END:
                self.complete = True
            return Record(kind, key, body)
        self.skipped += len(self._buf)
        self._buf.clear()
        return None

    def __iter__(self) -> Iterator[Record]:
        while (rec := self.next()) is not None:
            yield rec

    def drain(self) -> None:
        """Read the stream to its end (udp-sender goes at the speed of its slowest
        receiver: one that stops reading holds up the whole room)."""
        while self.next() is not None:
            pass


def parse_head(body: bytes) -> dict[str, Any] | None:
    """The head record's fields, or None when they are not ours."""
    try:
        head = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(head, dict) or head.get("version") != STREAM_VERSION:
        return None
    if not isinstance(head.get("image"), str) or not isinstance(head.get("http"), str | None):
        return None
    return head


class ChunkStream:
    """The chunks of a stream, taken by name in about the order they were sent: `take`
    reads ahead at most `lookahead` records for the one asked for and keeps what it read
    past (at most `cache_bytes`) for later; None means "fetch it elsewhere"."""

    def __init__(
        self, reader: RecordReader, lookahead: int = LOOKAHEAD, cache_bytes: int = CACHE_BYTES
    ) -> None:
        self.reader = reader
        self.lookahead = lookahead
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached = 0
        self._lock = threading.Lock()
        self.ended = False
        self.chunks = 0  # chunk records read

    def head(self) -> tuple[dict[str, Any] | None, dict[str, bytes]]:
        """The head's fields and the repository files, read up to the first chunk."""
        head: dict[str, Any] | None = None
        files: dict[str, bytes] = {}
        with self._lock:
            while (rec := self._read()) is not None:
                if rec.kind == HEAD:
                    head = parse_head(rec.body)
                elif rec.kind == FILE:
                    files[rec.key] = rec.body
                else:
                    self._keep(rec)
                    break
        return head, files

    def _read(self) -> Record | None:
        if self.ended:
            return None
        rec = self.reader.next()
        if rec is None or rec.kind == END:
            self.ended = True
            return None
        return rec

    def _keep(self, rec: Record) -> None:
        if rec.kind != CHUNK or len(rec.key) != HASH_HEX_LEN:
            return
        self.chunks += 1
        old = self._cache.pop(rec.key, None)
        if old is not None:
            self._cached -= len(old)
        self._cache[rec.key] = rec.body
        self._cached += len(rec.body)
        while self._cached > self.cache_bytes and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._cached -= len(dropped)

    def take(self, name: str) -> bytes | None:
        """The stored bytes of chunk `name` as the stream carried them (not yet checked)."""
        with self._lock:
            for _ in range(self.lookahead + 1):
                blob = self._cache.get(name)
                if blob is not None:
                    self._cache.move_to_end(name)
                    return blob
                rec = self._read()
                if rec is None:
                    return None
                self._keep(rec)
            return self._cache.get(name)

    def drain(self) -> None:
        with self._lock:
            self._cache.clear()
            self._cached = 0
            if not self.ended:
                self.reader.drain()
                self.ended = True

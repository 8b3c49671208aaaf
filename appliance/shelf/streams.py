"""Streams of other tools' image files: a file or its split pieces read as one stream, and
decompressed by what its first bytes say it is.

Clonezilla splits a partition's stream into `NAME.aa`, `NAME.ab`, ... (`split -a 2`, more
letters when there are many) and compresses it with gzip, zstd, xz, bzip2 or lz4 (often their
parallel forms, which write several members or frames: each reader here reads across them).
The compressor is found by magic bytes, never by the file name, which people rename.

    with open_stream(Path("sda1.ext4-ptcl-img.zst"), "partition sda1") as stream:
        stream.read(4096)

A damaged or truncated stream raises `CorruptData` naming `what`, at the read that meets it.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import re
import subprocess
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Protocol, cast

import lz4.frame
import zstandard

from appliance.errors import CorruptData, UnsupportedImage
from appliance.tools import which

MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"\x02\x21\x4c\x18", "lz4 legacy"),
    (b"\x89LZO\x00\r\n\x1a\n", "lzop"),
    (b"\x5d\x00\x00", "lzma"),
)
READABLE = ("gzip", "zstd", "xz", "bzip2", "lz4", "none")


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...
    def close(self) -> None: ...


_PIECE = re.compile(r"\.([a-z]{2,})$")


def detect(head: bytes) -> str:
    """The compressor whose magic `head` starts with, or "none"."""
    for magic, name in MAGICS:
        if head.startswith(magic):
            return name
    return "none"


def pieces(path: Path) -> list[Path]:
    """The files holding the stream named `path`: `path` itself when it exists, else its
    split pieces `path.aa`, `path.ab`, ... in order. A gap in the letters is a sentence."""
    if path.is_file():
        return [path]
    found = sorted(
        (p for p in path.parent.glob(path.name + ".*") if _PIECE.search(p.name[len(path.name) :])),
        key=lambda p: (len(p.name), p.name),
    )
    if not found:
        raise UnsupportedImage(f"{path} is missing: neither the file nor its split pieces exist.")
    for expected, piece in zip(_piece_names(len(found)), found, strict=False):
        if piece.name != f"{path.name}.{expected}":
            raise CorruptData(
                f"Split piece {path.name}.{expected} is missing from {path.parent} "
                f"(the stream cannot be read past {piece.name})."
            )
    return found


def _piece_names(count: int) -> Iterator[str]:
    """split's suffixes: aa..zz, then (split -a grows them) yzaaaa-style names are rare
    enough that only the two-letter run and longer fixed widths are followed."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    for i in range(count):
        if i < 26 * 26:
            yield letters[i // 26] + letters[i % 26]
        else:
            return


class _Concat(io.RawIOBase):
    """Several files read one after the other as one stream."""

    def __init__(self, files: list[Path]) -> None:
        self._files = list(files)
        self._current: io.BufferedReader | None = None
        self.consumed = 0  # compressed bytes read, for progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while True:
            if self._current is None:
                if not self._files:
                    return 0
                self._current = open(self._files.pop(0), "rb")  # noqa: SIM115
            count = self._current.readinto(buffer)
            if count:
                self.consumed += count
                return count
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        super().close()


class _Checked(io.RawIOBase):
    """A decompressing reader whose library errors become one sentence naming `what`."""

    def __init__(self, inner: _Reader, what: str, kind: str) -> None:
        self._inner = inner
        self._what = what
        self._kind = kind

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(buffer))
        except (
            OSError,
            EOFError,
            zlib.error,
            lzma.LZMAError,
            zstandard.ZstdError,
            RuntimeError,
        ) as exc:
            raise CorruptData(
                f"The {self._kind} stream of {self._what} is damaged or cut short ({exc})."
            ) from exc
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


class _ZstdProcess:
    """zstd frames one after another (zstd -T, pzstd) decompressed by Debian's `zstd` in a
    child process: memory stays flat whatever the ratio (a run of zeros is kilobytes of input
    and gigabytes of output, which python-zstandard's decompressobj returns in one piece),
    the work runs beside Python's, and a stream that ends inside a frame or is damaged makes
    zstd fail, which is said (the library's stream reader takes a cut frame for the end)."""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        self._raw = raw
        self._proc = subprocess.Popen(
            [which("zstd"), "-d", "-c", "-q"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._feeder = threading.Thread(target=self._feed, name="zstd-feeder", daemon=True)
        self._feeder.start()

    def _feed(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            while chunk := self._raw.read(1 << 20):
                stdin.write(chunk)
        with contextlib.suppress(BrokenPipeError, OSError):
            stdin.close()

    def read(self, size: int = -1, /) -> bytes:
        stdout = self._proc.stdout
        assert stdout is not None
        data = stdout.read(size)
        if not data and size != 0:
            self._feeder.join()
            code = self._proc.wait()
            if code != 0:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                lines = [line for line in err.splitlines() if line.strip()]
                raise EOFError(lines[-1] if lines else f"zstd exited {code}")
        return data

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()  # our own child, by its handle
        self._proc.wait()
        self._feeder.join()
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()


def _decompressor(stream: io.BufferedIOBase, kind: str) -> _Reader:
    raw = cast(IO[bytes], stream)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "zstd":
        return _ZstdProcess(stream)
    if kind == "xz":
        return lzma.LZMAFile(raw, "rb")
    if kind == "bzip2":
        return bz2.BZ2File(raw, "rb")
    if kind == "lz4":
        return lz4.frame.LZ4FrameFile(raw, "rb")  # type: ignore[no-any-return]
    return stream


@contextlib.contextmanager
def open_stream(path: Path, what: str, buffer: int = 1 << 20) -> Iterator[io.BufferedIOBase]:
    """The decompressed stream stored at `path` (or its split pieces)."""
    files = pieces(path)
    raw = io.BufferedReader(_Concat(files), buffer_size=buffer)
    try:
        kind = detect(raw.peek(16)[:16])
        if kind not in READABLE:
            raise UnsupportedImage(
                f"{what} is compressed with {kind}, which this appliance cannot read "
                f"(it reads {', '.join(READABLE[:-1])} and uncompressed streams)."
            )
        if kind == "none":
            yield raw
            return
        stream = io.BufferedReader(
            _Checked(_decompressor(raw, kind), what, kind), buffer_size=buffer
        )
        with stream:
            yield stream
    finally:
        raw.close()


def compression_of(path: Path) -> str:
    """The compressor of the stream at `path` (or its first split piece)."""
    with open(pieces(path)[0], "rb") as f:
        return detect(f.read(16))

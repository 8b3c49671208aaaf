"""A raw disk image file on the shelf: what it is, its raw size when known, open it as a stream.

`appliance write FILE TARGET...` takes `.img .iso .bin` (the disk's bytes as they are), the
same compressed (`.gz .xz .zst .bz2`: decompressed by appliance.shelf.streams, which finds the
compressor by its magic bytes) and a `.zip` that holds exactly one image (stdlib zipfile);
a file split into pieces (`NAME.aa`, `NAME.ab`, ...) is named by NAME and read as one.
Every kind is one branch of `probe` and `open_image`; a VM disk (`.qcow2 .vhd .vhdx .vmdk
.vdi`) is read through qemu's raw view of it (appliance.shelf.vmdisk), never converted.

The raw size comes from the container where it says it reliably: the file itself, the zip
entry's size, the xz index (`xz --robot --list`), zstd's frame headers (`zstd -lv`; the zstd
tool writes them for a file, not for a pipe). gzip's trailer holds the size modulo 4 GiB and
bzip2 never says it: for those `size` is None and the job reads the stream once first
(`scan`) to learn the size and where its data ends.
"""

from __future__ import annotations

import errno
import glob
import io
import lzma
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from appliance.disk.parted import read_sfdisk
from appliance.errors import ApplianceError, CorruptData, ImageError, UnsupportedImage, UsageError
from appliance.shelf import streams, vmdisk
from appliance.tools import run

RAW_SUFFIXES = (".img", ".iso", ".bin")
COMPRESSED_SUFFIXES = {".gz": "gzip", ".xz": "xz", ".zst": "zstd", ".bz2": "bzip2"}
BLOCK = 4 * 1024 * 1024
_ZSTD_SIZE = re.compile(r"^Decompressed Size: .*\((\d+) B\)$", re.MULTILINE)
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
#: what reading a damaged stream raises (streams' CorruptData, or the zip reader's own errors)
STREAM_ERRORS = (ApplianceError, OSError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError)
HEAD = 8 * 1024 * 1024  # the table sectors of an image: MBR, GPT header and entries


@dataclass(frozen=True)
class ImageFile:
    """One image file: its path, kind ("raw", "gzip", "xz", "zstd", "bzip2", "zip"), the zip
    entry that holds the image, and the image's raw size (None while unknown)."""

    path: Path
    kind: str
    size: int | None
    member: str | None = None
    pieces: int = 1  # split pieces (`NAME.aa`, `NAME.ab`, ...) read as one file
    vm: str | None = None  # a VM disk's format (qemu's name: qcow2, vpc, vhdx, vmdk, vdi)

    @property
    def name(self) -> str:
        return self.path.name if self.member is None else f"{self.path.name}:{self.member}"

    @property
    def split(self) -> str:
        return f", in {self.pieces} pieces" if self.pieces > 1 else ""

    @property
    def seekable(self) -> bool:
        """Whether any byte can be read without reading all before it."""
        return self.kind == "raw" and self.pieces == 1

    def describe(self) -> str:
        if self.vm is not None:
            return f"{vmdisk.NAMES.get(self.vm, self.vm)} VM disk"
        how = {"raw": "raw image", "zip": "image in a zip file"}.get(self.kind, "")
        return (how or f"{self.kind}-compressed raw image") + self.split


@dataclass(frozen=True)
class Scan:
    """What a full read of the image found: its size and where its last non-zero byte ends."""

    size: int
    data_end: int


def _kinds() -> str:
    return ", ".join([*RAW_SUFFIXES, *COMPRESSED_SUFFIXES, ".zip", *vmdisk.FORMATS])


def probe(path: str | Path) -> ImageFile:
    """The image file at `path`, or one sentence saying why it cannot be written to a disk."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return _probe_pieces(path)
        raise ImageError(f"The image file {path} cannot be read: {exc.strerror}.") from exc
    if not path.is_file():
        raise UsageError(f"{path} is not a file; name an image file ({_kinds()}).")
    if not os.access(path, os.R_OK):
        raise ImageError(f"The image file {path} cannot be read: permission denied.")
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return _probe_zip(path)
    if vmdisk.vm_format(path) is not None:  # read through qemu's raw view, never converted
        disk = vmdisk.inspect(path)
        return ImageFile(path, "vm", disk.size, vm=disk.format)
    if suffix not in RAW_SUFFIXES and suffix not in COMPRESSED_SUFFIXES:
        raise UsageError(f"{path.name} is not a disk image file this tool writes; use {_kinds()}.")
    kind = streams.compression_of(path)  # by magic bytes: people rename files
    if kind == "none":
        return ImageFile(path, "raw", st.st_size)
    if kind not in streams.READABLE:
        raise UnsupportedImage(
            f"{path.name} is compressed with {kind}, which this appliance cannot read "
            f"(it reads {', '.join(streams.READABLE[:-1])})."
        )
    return ImageFile(path, kind, _container_size(path, kind))


def _probe_pieces(path: Path) -> ImageFile:
    """A file split into pieces (`split -b`: `NAME.aa`, `NAME.ab`, ...), named by NAME."""
    if not any(path.parent.glob(glob.escape(path.name) + ".a*")):
        raise ImageError(f"The image file {path} does not exist.")
    found = streams.pieces(path)
    if path.suffix.lower() not in RAW_SUFFIXES and path.suffix.lower() not in COMPRESSED_SUFFIXES:
        raise UsageError(f"{path.name} is not a disk image file this tool writes; use {_kinds()}.")
    kind = streams.compression_of(path)
    if kind not in streams.READABLE:
        raise UnsupportedImage(
            f"{path.name} is compressed with {kind}, which this appliance cannot read."
        )
    size = sum(piece.stat().st_size for piece in found) if kind == "none" else None
    return ImageFile(path, "raw" if kind == "none" else kind, size, pieces=len(found))


def _probe_zip(path: Path) -> ImageFile:
    try:
        with zipfile.ZipFile(path) as archive:
            entries = [
                info
                for info in archive.infolist()
                if not info.is_dir() and Path(info.filename).suffix.lower() in RAW_SUFFIXES
            ]
    except (zipfile.BadZipFile, OSError) as exc:
        raise ImageError(f"The zip file {path} is damaged or not a zip file ({exc}).") from exc
    if not entries:
        raise ImageError(
            f"The zip file {path} holds no disk image ({', '.join(RAW_SUFFIXES)}); "
            "extract it and name the image."
        )
    if len(entries) > 1:
        names = ", ".join(info.filename for info in entries[:4])
        raise ImageError(
            f"The zip file {path} holds {len(entries)} images ({names}); extract the one "
            "to write and name it."
        )
    entry = entries[0]
    if entry.flag_bits & 0x1:
        raise UnsupportedImage(
            f"The image {entry.filename} in {path.name} is encrypted; extract it with its "
            "password first."
        )
    if entry.compress_type not in ZIP_METHODS:
        raise UnsupportedImage(
            f"The image {entry.filename} in {path.name} is compressed with zip method "
            f"{entry.compress_type}, which this appliance cannot read; extract it first."
        )
    return ImageFile(path, "zip", entry.file_size, entry.filename)


def _container_size(path: Path, kind: str) -> int | None:
    """The uncompressed size the container records: the xz index (`xz --robot --list`), the
    zstd frame headers (`zstd -lv`, when every frame says it); None when it does not say, or
    cannot be read (the first read of the stream then says how)."""
    if kind == "xz":
        proc = run(["xz", "--robot", "--list", str(path)], check=False, timeout=120)
        if proc.returncode != 0:
            return None
        for line in proc.stdout.splitlines():
            fields = line.split("\t")
            if fields[0] == "totals" and len(fields) > 4 and fields[4].isdigit():
                return int(fields[4])
    if kind == "zstd":
        proc = run(["zstd", "-lv", str(path)], check=False, timeout=120)
        found = _ZSTD_SIZE.search(proc.stdout)
        if proc.returncode == 0 and found:
            return int(found.group(1))
    return None


@contextmanager
def open_image(image: ImageFile) -> Iterator[io.BufferedIOBase]:
    """The image's raw bytes as a stream, from its first byte."""
    try:
        if image.seekable:
            with open(image.path, "rb") as handle:
                yield handle
        elif image.vm is not None:
            with vmdisk.RawView(image.path, fmt=image.vm) as view, open(view.path, "rb") as raw:
                yield raw
        elif image.kind == "zip":
            assert image.member is not None
            with zipfile.ZipFile(image.path) as archive, archive.open(image.member) as entry:
                yield cast(io.BufferedIOBase, entry)  # a ZipExtFile
        else:
            with streams.open_stream(image.path, f"the image file {image.name}") as stream:
                yield stream
    except OSError as exc:
        if isinstance(exc.__context__, ApplianceError):
            raise exc.__context__ from exc
        raise ImageError(f"The image file {image.path} cannot be read: {exc}.") from exc


def read_full(stream: io.BufferedIOBase, view: memoryview) -> int:
    """Fill `view` from `stream`; fewer bytes only at the end of the stream."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def damaged(image: ImageFile, position: int, exc: BaseException) -> ApplianceError:
    """The sentence for a stream that fails while it is read (streams' own, or this)."""
    if isinstance(exc, ApplianceError):
        return exc
    detail = str(exc) or type(exc).__name__
    return CorruptData(
        f"The image file {image.name} is damaged or cut short after {position} bytes ({detail})."
    )


def scan(
    image: ImageFile, *, tick: Callable[[int], None] | None = None, limit: int | None = None
) -> Scan:
    """Read the image once: its raw size, and where its data ends (what follows is zeros).
    A raw file reads only its tail from `limit` on (the data before it does not matter)."""
    if image.seekable and image.size is not None:
        return Scan(image.size, _raw_data_end(image, limit or 0))
    size = data_end = 0
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    with open_image(image) as stream:
        while True:
            try:
                got = read_full(stream, view)
            except STREAM_ERRORS as exc:
                raise damaged(image, size, exc) from exc
            if not got:
                break
            last = len(bytes(view[:got]).rstrip(b"\0"))
            if last:
                data_end = size + last
            size += got
            if tick is not None:
                tick(got)
    if image.size is not None and image.size != size:
        raise ImageError(
            f"The image file {image.name} holds {size} bytes, not the {image.size} "
            "its header records; it is damaged."
        )
    return Scan(size, data_end)


def _raw_data_end(image: ImageFile, limit: int) -> int:
    """Where the data of a raw file ends, looking back from its end down to `limit`."""
    assert image.size is not None
    with open(image.path, "rb") as handle:
        end = image.size
        while end > limit:
            start = max(limit, end - BLOCK)
            handle.seek(start)
            data = handle.read(end - start).rstrip(b"\0")
            if data:
                return start + len(data)
            end = start
    return limit


def partitions_end(image: ImageFile, size: int) -> tuple[str | None, int | None]:
    """The image's table ("dos", "gpt" or None) and where its last partition ends, in bytes,
    as sfdisk reads the image's head (a sparse scratch copy of it when it is compressed)."""
    if image.seekable:
        return _table_end(str(image.path))
    with tempfile.NamedTemporaryFile(prefix="appliance-head-", suffix=".img") as scratch:
        scratch.write(read_head(image))
        scratch.truncate(size)
        scratch.flush()
        return _table_end(scratch.name)


def read_head(image: ImageFile, length: int = HEAD) -> bytes:
    """The image's first `length` bytes (fewer when it is smaller)."""
    head = bytearray(length)
    with open_image(image) as stream:
        try:
            got = read_full(stream, memoryview(head))
        except STREAM_ERRORS as exc:
            raise damaged(image, 0, exc) from exc
    return bytes(head[:got])


def _table_end(node: str) -> tuple[str | None, int | None]:
    table = read_sfdisk(node)
    if table is None:
        return None, None
    sector = table.sector_size or 512
    ends = [(e.start + e.size) * sector for e in table.entries]
    return table.label, max(ends, default=None)

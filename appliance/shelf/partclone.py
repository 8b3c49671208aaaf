"""Read partclone's image format (what Clonezilla and Rescuezilla store per partition).

Written from the format's facts as partclone 0.2/0.3 write and read it (partclone.h,
partclone.c, main.c, checksum.c); all integers little-endian, structures packed:

Format 0002 (partclone 0.3+), a 110-byte description:
    magic "partclone-image\\0" (16), partclone version (14), "0002" (4), 0xC0DE (u16: the
    writer was little-endian); fs name (16), device size, total blocks, blocks used by the
    filesystem's count, blocks used in the bitmap (u64 each), block size (u32); options:
    size of the options (u32), image version (u16), cpu bits (u16), checksum mode (u16),
    checksum size (u16), blocks per checksum (u32), reseed (u8), bitmap mode (u8);
    then the CRC32 of those 106 bytes.
  The bitmap: one bit per block (mode 1; block N is bit N % 8 of byte N // 8), then the
  CRC32 of its bytes; or none at all (mode 0: every block is present).
  The data: each used block in order; after every `blocks per checksum` used blocks (they need
  not be neighbours) the checksum of those blocks, and one more after the last block for an
  unfinished group. With reseeding the checksum restarts after each one; without, it runs on.
Format 0001 (partclone 0.1/0.2), a 4160-byte description:
    magic "partclone-image" (15), fs name (15), "0001" (4), padding (2), block size (i32),
    device size, total blocks, used blocks (u64 each), 4096 unused bytes.
  The bitmap: one byte per block (1 = used), then "BiTmAgIc".
  The data: each used block followed by its CRC (format 0001's own, see checksums.py), never
  reseeded. 64-bit builds before 0.1.0 wrote each CRC as 8 bytes (4 zero bytes after it):
  the layout is told apart on the first blocks, as partclone 0.2 did by trying both.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from appliance.errors import CorruptData, UnsupportedImage
from appliance.shelf import bitmap as bits
from appliance.shelf import checksums
from appliance.shelf.checksums import partclone_crc32

MAGIC = b"partclone-image"
BIT_MAGIC = b"BiTmAgIc"
ENDIAN_LITTLE = 0xC0DE
ENDIAN_BIG = 0xDEC0
BM_NONE, BM_BIT, BM_BYTE = 0x00, 0x01, 0x08
MAX_BLOCK_SIZE = 64 << 20
YIELD_BYTES = 4 << 20  # at most this much data per item of blocks()

_HEAD_V2 = struct.Struct("<16s14s4sH")
_FS_V2 = struct.Struct("<16sQQQQI")
_OPT_V2 = struct.Struct("<IHHHHIBB")
DESC_V2 = _HEAD_V2.size + _FS_V2.size + _OPT_V2.size + 4  # 110
_HEAD_V1 = struct.Struct("<15s15s4s2siQQQ")
DESC_V1 = _HEAD_V1.size + 4096  # 4160


class ByteStream(Protocol):
    """What the reader needs of its stream (a BinaryIO, or what streams.open_stream gives)."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class PartcloneHeader:
    """What an image's description and bitmap say about it."""

    version: int  # 1 (format 0001) or 2 (format 0002)
    fs: str  # partclone's name of the filesystem: "EXTFS", "NTFS", "FAT", "BTRFS", ...
    made_by: str  # the partclone version that wrote it ("0.3.23"); "" for format 0001
    block_size: int
    device_size: int  # bytes of the partition it was made from
    total_blocks: int
    used_blocks: int  # blocks the bitmap marks used: the blocks the data holds
    declared_used_blocks: int  # the description's own count (partclone trusts the bitmap)
    checksum: str  # "none", "crc32", "crc32-0001" (format 0001's), "xxh64", "xxh128"
    checksum_size: int  # bytes of each checksum in the data (format 0001: 4, see crc_bytes)
    blocks_per_checksum: int  # 0 when there are no checksums
    reseed: bool  # the checksum restarts after each one
    bitmap: str  # "bit", "byte" or "none" (every block present)
    data_offset: int  # bytes of description and bitmap before the first block

    @property
    def used_bytes(self) -> int:
        return self.used_blocks * self.block_size

    @property
    def checksum_count(self) -> int:
        """Checksums interleaved with the data."""
        if not self.checksum_size or not self.blocks_per_checksum:
            return 0
        return -(-self.used_blocks // self.blocks_per_checksum)

    @property
    def image_size(self) -> int:
        """Bytes of the whole image stream (format 0001's 8-byte-CRC variant aside)."""
        return self.data_offset + self.used_bytes + self.checksum_count * self.checksum_size


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("ascii", "replace").strip()


class PartcloneReader:
    """One partclone image stream: its description and bitmap read at once, then its blocks.

    `stream` is the decompressed stream (appliance.shelf.streams.open_stream); `what` names
    it in every sentence ("partition sda1 of Clonezilla image 2024-05-01-img")."""

    def __init__(self, stream: ByteStream, what: str) -> None:
        self._stream = stream
        self.what = what
        self._pending = b""  # bytes read ahead (format 0001's CRC layout test)
        self._bits: bytes | None = None  # None: every block is used (bitmap mode 0)
        self._mode = checksums.CSM_NONE
        self.header = self._read_description()
        self._sum = checksums.make(self._mode, format1=self.header.version == 1)
        self._crc_bytes = self.header.checksum_size  # format 0001's variant: 8
        self._group_done = 0  # blocks in the current checksum group
        self._group_first = 0  # partition block numbers of the group's first and last block
        self._group_last = 0
        self._layout_known = self.header.version != 1
        self._started = False

    # ---- description and bitmap ----

    def _read_description(self) -> PartcloneHeader:
        head = self._read(DESC_V2, "its description")
        if not head.startswith(MAGIC):
            raise UnsupportedImage(f"{self.what} is not a partclone image (no partclone magic).")
        version = head[30:34]
        if version == b"0002":
            return self._description_v2(head)
        if version == b"0001":
            return self._description_v1(head + self._read(DESC_V1 - DESC_V2, "its description"))
        raise UnsupportedImage(
            f"{self.what} is a partclone image of format {_text(version)!r}, which this "
            "appliance does not read (it reads formats 0001 and 0002)."
        )

    def _description_v2(self, raw: bytes) -> PartcloneHeader:
        _magic, made_by, _version, endian = _HEAD_V2.unpack_from(raw, 0)
        if endian == ENDIAN_BIG:
            raise UnsupportedImage(
                f"{self.what} was written by partclone on a big-endian machine, "
                "which this appliance does not read."
            )
        stored = int.from_bytes(raw[DESC_V2 - 4 :], "little")
        if endian != ENDIAN_LITTLE or partclone_crc32(raw[: DESC_V2 - 4]) != stored:
            raise CorruptData(
                f"The description of {self.what} is damaged (its CRC does not match)."
            )
        fs, device, total, _fs_used, used, block = _FS_V2.unpack_from(raw, _HEAD_V2.size)
        _fsize, _iver, _cpu, mode, cs_size, per_cs, reseed, bm_mode = _OPT_V2.unpack_from(
            raw, _HEAD_V2.size + _FS_V2.size
        )
        self._mode = mode
        if mode not in checksums.NAMES:
            raise UnsupportedImage(
                f"{self.what} uses partclone checksum mode {mode:#x}, which this appliance "
                "does not know (it knows none, CRC32, XXH64 and XXH128)."
            )
        if checksums.SIZES[mode] != cs_size or (mode != checksums.CSM_NONE and not per_cs):
            raise CorruptData(f"The description of {self.what} is damaged (checksum settings).")
        self._check_sizes(block, device, total, used)
        if bm_mode not in (BM_BIT, BM_NONE):
            raise UnsupportedImage(
                f"{self.what} stores its bitmap in mode {bm_mode:#x}, which partclone itself "
                "does not read back in format 0002."
            )
        offset = DESC_V2
        if bm_mode == BM_BIT:
            size = (total + 7) // 8
            raw_bits = self._read(size + 4, "its bitmap")
            if partclone_crc32(raw_bits[:size]) != int.from_bytes(raw_bits[size:], "little"):
                raise CorruptData(f"The bitmap of {self.what} is damaged (its CRC does not match).")
            self._bits = bits.trim(raw_bits[:size], total)
            offset += size + 4
        elif used != total:
            raise CorruptData(
                f"The description of {self.what} is damaged (no bitmap, not all used)."
            )
        return PartcloneHeader(
            version=2,
            fs=_text(fs),
            made_by=_text(made_by),
            block_size=block,
            device_size=device,
            total_blocks=total,
            used_blocks=total if self._bits is None else bits.count_used(self._bits),
            declared_used_blocks=used,
            checksum=checksums.NAMES[mode],
            checksum_size=cs_size,
            blocks_per_checksum=per_cs if cs_size else 0,
            reseed=bool(reseed),
            bitmap="bit" if bm_mode == BM_BIT else "none",
            data_offset=offset,
        )

    def _description_v1(self, raw: bytes) -> PartcloneHeader:
        _magic, fs, _version, _pad, block, device, total, used = _HEAD_V1.unpack_from(raw, 0)
        self._mode = checksums.CSM_CRC32
        self._check_sizes(block, device, total, used)
        packed = bytearray()  # one byte per block on disk, one bit per block here
        left = total
        while left:
            piece = self._read(min(left, 1 << 20), "its bitmap")  # a multiple of 8 but the last
            packed += bits.pack_byte_bitmap(piece)
            left -= len(piece)
        if self._read(len(BIT_MAGIC), "its bitmap") != BIT_MAGIC:
            raise CorruptData(f"The bitmap of {self.what} is damaged (its end mark is missing).")
        self._bits = bits.trim(bytes(packed), total)
        return PartcloneHeader(
            version=1,
            fs=_text(fs),
            made_by="",
            block_size=block,
            device_size=device,
            total_blocks=total,
            used_blocks=bits.count_used(self._bits),
            declared_used_blocks=used,
            checksum="crc32-0001",
            checksum_size=4,
            blocks_per_checksum=1,
            reseed=False,
            bitmap="byte",
            data_offset=DESC_V1 + total + len(BIT_MAGIC),
        )

    def _check_sizes(self, block: int, device: int, total: int, used: int) -> None:
        if not 0 < block <= MAX_BLOCK_SIZE or used > total or total * block > device:
            raise CorruptData(
                f"The description of {self.what} is damaged (block size {block}, "
                f"{total} blocks, {used} used, device of {device} bytes)."
            )

    # ---- the data ----

    def used_ranges(self) -> list[tuple[int, int]]:
        """(byte offset in the partition, length) of each run of used blocks, merged."""
        size = self.header.block_size
        return [(first * size, count * size) for first, count in self._runs()]

    def _runs(self) -> Iterator[tuple[int, int]]:
        if self._bits is None:
            if self.header.total_blocks:
                yield 0, self.header.total_blocks
            return
        yield from bits.runs(self._bits)

    def blocks(self) -> Iterator[tuple[int, bytes]]:
        """(byte offset in the partition, the bytes of consecutive used blocks), in order, at
        most YIELD_BYTES each, every checksum verified; then the end of the stream is checked.
        Call it once: it consumes the stream."""
        if self._started:
            raise RuntimeError("PartcloneReader.blocks() reads the stream once")
        self._started = True
        size = self.header.block_size
        step = max(1, YIELD_BYTES // size)
        for first, count in self._runs():
            while count:
                take = min(count, step)
                yield first * size, self._take(first, take)
                first += take
                count -= take
        self._finish()

    def _take(self, block: int, count: int) -> bytes:
        """The data of `count` used blocks from partition block `block` on, checked."""
        size = self.header.block_size
        if self._sum is None:
            return self._read(count * size, f"block {block}")
        if not self._layout_known:
            self._settle_crc_layout()
            self._layout_known = True
        per = self.header.blocks_per_checksum
        parts: list[bytes | memoryview] = []
        while count:
            if self._group_done == 0 and count >= per:
                groups = count // per
                span = per * size
                stride = span + self._crc_bytes
                buf = memoryview(self._read(groups * stride, f"block {block}"))
                for g in range(groups):
                    data = buf[g * stride : g * stride + span]
                    self._sum.update(data)
                    self._group_first, self._group_last = block, block + per - 1
                    self._close_group(buf[g * stride + span : (g + 1) * stride])
                    parts.append(data)
                    block += per
                count -= groups * per
                continue
            take = min(count, per - self._group_done)
            data_b = self._read(take * size, f"block {block}")
            if self._group_done == 0:
                self._group_first = block
            self._group_last = block + take - 1
            self._sum.update(data_b)
            parts.append(data_b)
            self._group_done += take
            block += take
            count -= take
            if self._group_done == per:
                self._close_group(self._read(self._crc_bytes, f"block {block - 1}"))
        if len(parts) == 1 and isinstance(parts[0], bytes):
            return parts[0]
        return b"".join(parts)

    def _close_group(self, stored: bytes | memoryview) -> None:
        """Compare the running checksum with the one stored after the group's last block."""
        assert self._sum is not None
        wanted = self._sum.digest()
        if bytes(stored[: len(wanted)]) != wanted:
            first, last = self._group_first, self._group_last
            where = f"block {first}" if first == last else f"blocks {first} to {last}"
            raise CorruptData(
                f"{self.what} is damaged: the checksum of its {where} does not match "
                f"(partition bytes from {first * self.header.block_size} on)."
            )
        self._group_done = 0
        if self.header.reseed:
            self._sum.reset()

    def _settle_crc_layout(self) -> None:
        """Format 0001: are the CRCs 4 bytes, or 8 (old 64-bit builds)? Try both on the first
        two blocks, as partclone 0.2 did, and keep the stream where it was."""
        size = self.header.block_size
        ahead = self._peek(2 * size + 16)
        if len(ahead) < size + 8 or ahead[size + 4 : size + 8] != bytes(4):
            return  # a 4-byte layout (or too short to be the 8-byte one)
        probe = checksums.Crc32Format1()
        probe.update(ahead[:size])
        if ahead[size : size + 4] != probe.digest():
            return  # the first block is damaged: reported by the normal path
        if len(ahead) == size + 8:
            self._crc_bytes = 8  # one block, its CRC and the 4 zero bytes, and the end
            return
        four, eight = checksums.Crc32Format1(), checksums.Crc32Format1()
        four.update(ahead[:size])
        eight.update(ahead[:size])
        four.update(ahead[size + 4 : 2 * size + 4])
        eight.update(ahead[size + 8 : 2 * size + 8])
        fits_four = ahead[2 * size + 4 : 2 * size + 8] == four.digest()
        fits_eight = ahead[2 * size + 8 : 2 * size + 12] == eight.digest()
        if fits_eight and not fits_four:
            self._crc_bytes = 8

    def _finish(self) -> None:
        """After the last block: the last group's checksum, then nothing more."""
        if self._sum is not None and self._group_done:
            self._close_group(self._read(self._crc_bytes, "its last checksum"))
        extra = self._read_some(1)
        if extra:
            raise CorruptData(
                f"{self.what} is damaged: data follows its last block "
                f"(the image should end after {self.header.image_size} bytes)."
            )

    # ---- reading ----

    def _peek(self, count: int) -> bytes:
        """The next `count` bytes (fewer at the end), left to be read again."""
        pending, self._pending = self._pending, b""
        self._pending = pending + self._read_some(count - len(pending))
        return self._pending[:count]

    def _read_some(self, count: int) -> bytes:
        """Up to `count` bytes (fewer only at the end of the stream)."""
        if count <= 0:
            return b""
        if self._pending:
            head, self._pending = self._pending[:count], self._pending[count:]
            return head + self._read_some(count - len(head)) if len(head) < count else head
        first = self._stream.read(count)
        if len(first) == count or not first:
            return first
        parts = [first]
        have = len(first)
        while have < count:
            more = self._stream.read(count - have)
            if not more:
                break
            parts.append(more)
            have += len(more)
        return b"".join(parts)

    def _read(self, count: int, where: str) -> bytes:
        data = self._read_some(count)
        if len(data) != count:
            raise CorruptData(
                f"{self.what} is cut short: the image ends inside {where} "
                "(the file is truncated or a split piece is missing)."
            )
        return data

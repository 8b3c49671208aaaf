"""The checksums partclone interleaves with the blocks of its images, as it computes them.

- CRC32 (mode 0x20, images 0002): the reflected 0xEDB88320 table with seed 0xFFFFFFFF and no
  final inversion. zlib's crc32 inverts on the way in and out, so partclone's register is
  zlib's value XOR 0xFFFFFFFF: the same arithmetic at zlib's speed. Without reseeding (-K) the
  register runs on over the whole image; with it (the default) it restarts after each checksum.
- CRC32 of format 0001: the same table, but partclone's old loop never advanced its pointer, so
  each block's CRC is the CRC of its FIRST BYTE repeated block-size times; it is never reseeded.
  (It proves little about the data; it is checked because it is what the image carries.)
- XXH64 (0x30, seed 0) and XXH3-128 (0x31), written by partclone builds with xxHash (newer
  than Debian 12's 0.3.23): the digest stored in the machine's (little-endian) order, low 64
  bits first for XXH3-128. Read through Debian's libxxhash0 (which apt itself depends on).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import zlib
from typing import Protocol

from appliance.errors import UnsupportedImage

CSM_NONE = 0x00
CSM_CRC32 = 0x20
CSM_XXH64 = 0x30
CSM_XXH128 = 0x31
#: the names used in PartcloneHeader.checksum
NAMES = {CSM_NONE: "none", CSM_CRC32: "crc32", CSM_XXH64: "xxh64", CSM_XXH128: "xxh128"}
SIZES = {CSM_NONE: 0, CSM_CRC32: 4, CSM_XXH64: 8, CSM_XXH128: 16}


class Checksum(Protocol):
    size: int

    def update(self, data: bytes | memoryview) -> None: ...
    def digest(self) -> bytes: ...
    def reset(self) -> None: ...


def partclone_crc32(data: bytes | memoryview) -> int:
    """partclone's CRC32 of `data` from a fresh seed (its image header and bitmap CRCs)."""
    return zlib.crc32(data) ^ 0xFFFFFFFF


class Crc32:
    size = 4

    def __init__(self) -> None:
        self._z = 0  # zlib's value; partclone's register is this XOR 0xFFFFFFFF

    def update(self, data: bytes | memoryview) -> None:
        self._z = zlib.crc32(data, self._z)

    def digest(self) -> bytes:
        return (self._z ^ 0xFFFFFFFF).to_bytes(4, "little")

    def reset(self) -> None:
        self._z = 0


class Crc32Format1(Crc32):
    """Format 0001's CRC: each block counts as its first byte repeated (see the module text)."""

    def __init__(self) -> None:
        super().__init__()
        self._repeats: dict[tuple[int, int], bytes] = {}

    def update(self, data: bytes | memoryview) -> None:
        if not len(data):
            return
        key = (data[0], len(data))
        run = self._repeats.get(key)
        if run is None:
            run = self._repeats[key] = bytes((data[0],)) * len(data)
        self._z = zlib.crc32(run, self._z)


class _Hash128(ctypes.Structure):
    _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]


_LIB: ctypes.CDLL | None = None


def _xxhash() -> ctypes.CDLL:
    global _LIB
    if _LIB is None:
        name = ctypes.util.find_library("xxhash") or "libxxhash.so.0"
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            raise UnsupportedImage(
                "This image's blocks carry xxHash checksums, and the xxHash library "
                "(Debian package libxxhash0) is not installed."
            ) from exc
        lib.XXH64_createState.restype = ctypes.c_void_p
        lib.XXH64_reset.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
        lib.XXH64_update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.XXH64_digest.argtypes = [ctypes.c_void_p]
        lib.XXH64_digest.restype = ctypes.c_uint64
        lib.XXH64_freeState.argtypes = [ctypes.c_void_p]
        lib.XXH3_createState.restype = ctypes.c_void_p
        lib.XXH3_128bits_reset.argtypes = [ctypes.c_void_p]
        lib.XXH3_128bits_update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.XXH3_128bits_digest.argtypes = [ctypes.c_void_p]
        lib.XXH3_128bits_digest.restype = _Hash128
        lib.XXH3_freeState.argtypes = [ctypes.c_void_p]
        _LIB = lib
    return _LIB


class Xxh64:
    size = 8

    def __init__(self) -> None:
        self._lib = _xxhash()
        self._state = self._lib.XXH64_createState()
        self.reset()

    def __del__(self) -> None:
        self._lib.XXH64_freeState(self._state)

    def update(self, data: bytes | memoryview) -> None:
        blob = bytes(data)
        self._lib.XXH64_update(self._state, blob, len(blob))

    def digest(self) -> bytes:
        return int(self._lib.XXH64_digest(self._state)).to_bytes(8, "little")

    def reset(self) -> None:
        self._lib.XXH64_reset(self._state, 0)


class Xxh128:
    size = 16

    def __init__(self) -> None:
        self._lib = _xxhash()
        self._state = self._lib.XXH3_createState()
        self.reset()

    def __del__(self) -> None:
        self._lib.XXH3_freeState(self._state)

    def update(self, data: bytes | memoryview) -> None:
        blob = bytes(data)
        self._lib.XXH3_128bits_update(self._state, blob, len(blob))

    def digest(self) -> bytes:
        value = self._lib.XXH3_128bits_digest(self._state)
        return int(value.low64).to_bytes(8, "little") + int(value.high64).to_bytes(8, "little")

    def reset(self) -> None:
        self._lib.XXH3_128bits_reset(self._state)


def make(mode: int, format1: bool = False) -> Checksum | None:
    """The running checksum of `mode`, or None for images without checksums."""
    if format1:
        return Crc32Format1()
    if mode == CSM_CRC32:
        return Crc32()
    if mode == CSM_XXH64:
        return Xxh64()
    if mode == CSM_XXH128:
        return Xxh128()
    return None

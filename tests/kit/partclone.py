"""partclone images for tests: small filesystems made in plain files by their real mkfs,
imaged by the real `partclone.<fs> -c`, restored by the real `partclone.<fs> -r`; and a
writer of format 0001 images (which no partclone in Debian writes any more) from the
format's facts, whose output the real `partclone -r` must restore.

Nothing here imports the appliance package: the checksums are computed the slow, plain way
(a table loop), so that they are an independent check of the reader's zlib-based ones.
"""

from __future__ import annotations

import re
import struct
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from kit.diskcompare import MTOOLS_ENV

PARTCLONE_FS = {"ext4": "ext4", "fat": "fat", "ntfs": "ntfs"}
#: partclone's progress thread is joined at exit after sleeping its refresh interval (2 s by
#: default, on every call); -f 0 makes it not sleep, and changes nothing else it writes
QUICK = ("-f", "0")


def run(*args: str | Path) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=MTOOLS_ENV)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def make_fs(kind: str, path: Path, size_mb: int, files: dict[str, bytes]) -> Path:
    """A `kind` filesystem in the file `path` holding `files` (written without mounting)."""
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    staging = path.with_suffix(".files")
    staging.mkdir()
    for name, data in files.items():
        (staging / name).write_bytes(data)
    if kind == "ext4":
        run("mkfs.ext4", "-q", "-F", "-b", "4096", "-d", staging, path)
    elif kind == "fat":
        run("mkfs.fat", "-F", "32" if size_mb >= 64 else "16", path)
        for name in files:
            run("mcopy", "-i", path, staging / name, f"::{name}")
    elif kind == "ntfs":
        run("mkfs.ntfs", "-q", "-F", "-f", path)
        for name in files:
            run("ntfscp", "-f", path, staging / name, name)
    else:
        raise ValueError(kind)
    return path


def clone(
    kind: str,
    source: Path,
    image: Path,
    *,
    checksum: int = 1,
    per: int | None = None,
    reseed: bool = True,
) -> Path:
    """`partclone.<kind> -c` of `source` into `image` (-a checksum mode, -k blocks per
    checksum, -K no reseed)."""
    args: list[str | Path] = [f"partclone.{PARTCLONE_FS[kind]}", *QUICK, "-c", "-s", source]
    args += ["-o", image]
    args += [f"-a{checksum}", "-L", image.with_suffix(".log")]
    if per is not None:
        args.append(f"-k{per}")
    if not reseed:
        args.append("-K")
    run(*args)
    return image


def restore(image: Path, out: Path, size: int) -> bytes:
    """What the real `partclone.restore` writes from `image` into a fresh file of `size`."""
    with open(out, "wb") as f:
        f.truncate(size)
    said = run(
        "partclone.restore", *QUICK, "-s", image, "-O", out, "-C", "-L", out.with_suffix(".log")
    )
    if "successfully restored" not in said:  # it exits 0 on some failures
        raise AssertionError(f"partclone.restore of {image} failed:\n{said}")
    data = out.read_bytes()
    return data + bytes(size - len(data))


def check_image(image: Path) -> str:
    """`partclone.chkimg`'s own verdict on `image` (raises if it finds damage)."""
    said = run("partclone.chkimg", *QUICK, "-s", image, "-L", image.with_suffix(".chk.log"))
    if "successfully" not in said:
        raise AssertionError(f"partclone.chkimg of {image} failed:\n{said}")
    return said


def info(image: Path) -> dict[str, int]:
    """What `partclone.info` says: block size, total and used blocks."""
    text = run("partclone.info", "-s", image, "-L", image.with_suffix(".info.log"))
    found = {
        "total_blocks": re.search(r"Device size:.*= (\d+) Blocks", text),
        "used_blocks": re.search(r"Space in use:.*= (\d+) Blocks", text),
        "block_size": re.search(r"Block size:\s+(\d+) Byte", text),
    }
    return {key: int(m.group(1)) for key, m in found.items() if m}


# ---- format 0001, written from the format's facts ----

_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0xEDB88320 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc_0001(crc: int, block: bytes) -> int:
    """Format 0001's CRC of one block: partclone's old loop, which read the first byte
    block-size times (its pointer never moved)."""
    first = block[0]
    for _ in range(len(block)):
        crc = (crc >> 8) ^ _TABLE[(crc ^ first) & 0xFF]
    return crc


def write_v1(
    path: Path,
    source: Path,
    block_size: int,
    used: Iterable[int],
    *,
    fs: str = "EXTFS",
    wide_crc: bool = False,
) -> Path:
    """A format 0001 image of the file `source` holding the blocks numbered in `used`.
    `wide_crc`: each CRC written as 8 bytes, as 64-bit builds before partclone 0.1.0 did."""
    data = source.read_bytes()
    total = len(data) // block_size
    used_set = sorted(set(used))
    entries = bytearray(total)
    for n in used_set:
        entries[n] = 1
    with open(path, "wb") as out:
        out.write(
            struct.pack(
                "<15s15s4s2siQQQ",
                b"partclone-image",
                fs.encode(),
                b"0001",
                b"\0\0",
                block_size,
                total * block_size,
                total,
                len(used_set),
            )
        )
        out.write(bytes(4096))
        out.write(bytes(entries))
        out.write(b"BiTmAgIc")
        crc = 0xFFFFFFFF  # seeded once, never reseeded
        for n in used_set:
            block = data[n * block_size : (n + 1) * block_size]
            crc = crc_0001(crc, block)
            out.write(block)
            out.write(struct.pack("<Q" if wide_crc else "<I", crc))
    return path


# ---- format 0002, written from the format's facts (for checksums Debian's partclone lacks) ----


def table_crc(data: bytes, crc: int = 0xFFFFFFFF) -> int:
    """partclone's CRC32: the table loop from seed 0xFFFFFFFF, no final inversion."""
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


CHECKSUM_MODES = {"none": (0x00, 0), "crc32": (0x20, 4), "xxh64": (0x30, 8), "xxh128": (0x31, 16)}


def write_v2(
    path: Path,
    source: Path,
    block_size: int,
    used: Iterable[int] | None,
    *,
    checksum: str,
    digest: Callable[[bytes], bytes],
    per: int = 1,
    reseed: bool = True,
) -> Path:
    """A format 0002 image of the file `source` holding the blocks numbered in `used` (None:
    no bitmap, every block). `digest(data)` is the checksum of `data`: everything since the
    last reseed (with reseed, the `per` blocks of the group; without, all blocks so far)."""
    data = source.read_bytes()
    total = len(data) // block_size
    numbers = list(range(total)) if used is None else sorted(set(used))
    mode, size = CHECKSUM_MODES[checksum]
    desc = struct.pack("<16s14s4sH", b"partclone-image", b"0.3.99", b"0002", 0xC0DE)
    desc += struct.pack("<16sQQQQI", b"EXTFS", total * block_size, total, len(numbers),
                        len(numbers), block_size)  # fmt: skip
    desc += struct.pack("<IHHHHIBB", 18, 2, 64, mode, size, per if size else 0, int(reseed),
                        0x00 if used is None else 0x01)  # fmt: skip
    with open(path, "wb") as out:
        out.write(desc + struct.pack("<I", table_crc(desc)))
        if used is not None:
            bitmap = bytearray((total + 7) // 8)
            for n in numbers:
                bitmap[n // 8] |= 1 << (n % 8)
            out.write(bytes(bitmap) + struct.pack("<I", table_crc(bytes(bitmap))))
        since = bytearray()
        for count, n in enumerate(numbers, 1):
            block = data[n * block_size : (n + 1) * block_size]
            out.write(block)
            since += block
            if size and (count % per == 0 or count == len(numbers)):
                out.write(digest(bytes(since)))
                if reseed:
                    since.clear()
    return path

"""Build real test disks on loop devices: real tables, real filesystems, real files.

Each builder makes a sparse image file, attaches it through ``loops`` (the conftest
fixture), writes a partition table with sfdisk, makes the filesystems, writes files
that are a pure function of ``seed``, syncs, then deletes some of them so that free
space holds stale, non-zero bytes (an imager must not copy them, and a restore must
not depend on them). UUIDs, labels and the table's GUIDs are derived from the seed as
well, so two builds with the same seed carry the same identities (except btrfs, whose
mkfs refuses a UUID already present on an attached device).

Nothing here imports the appliance package.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kit.diskcompare import (
    MTOOLS_ENV,
    blkid,
    device_size,
    flush,
    flush_all,
    gap_bytes,
    mounted,
    partition_nodes,
    read_bytes,
    run,
    sector_size,
    syncfs,
)

KiB = 1024
MiB = 1024 * KiB

ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_FS_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
MS_BASIC_DATA_TYPE = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
LINUX_SWAP_TYPE = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"

GPT_DISK_SIZE = 500 * MiB
MBR_DISK_SIZE = 600 * MiB
DISK_4K_SIZE = 400 * MiB

#: start of the gap marker (the gap is filled from the table's end to the first partition)
GAP_MAGIC = b"GRUB-CORE-IMG-TEST-MARKER\0"
#: start of the boot code marker (bytes 0..439 of LBA 0)
BOOT_MAGIC = b"\xeb\x63\x90BOOT-CODE-TEST-MARKER\0"


class LoopAttacher(Protocol):
    """What the builders need from the ``loops`` fixture."""

    def attach(self, path: Path, sector_size: int = 512, read_only: bool = False) -> str: ...


# --------------------------------------------------------------------------- helpers


def sparse_file(directory: Path, name: str, size: int) -> Path:
    """A sparse file of ``size`` bytes (all holes) in ``directory``."""
    path = Path(directory) / name
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def copy_image(src: Path, dst: Path, size: int | None = None) -> Path:
    """Copy an image file keeping its holes; ``size`` makes the copy larger (a bigger disk).

    If ``src`` is attached, call ``diskcompare.flush_all(node)`` first (the builders
    return with everything written).
    """
    run("cp", "--sparse=always", src, dst)
    if size is not None:
        if size < dst.stat().st_size:
            raise ValueError("copy_image: size smaller than the source")
        os.truncate(dst, size)
    return dst


def _rng(seed: int, tag: str) -> random.Random:
    return random.Random(f"{seed}:{tag}")


def _uuid(seed: int, tag: str) -> str:
    return str(uuid.UUID(int=_rng(seed, "uuid:" + tag).getrandbits(128), version=4))


def _text(rng: random.Random, size: int) -> bytes:
    words = [b"disk", b"image", b"chunk", b"sector", b"restore", b"save", b"grub", b"efi"]
    out = bytearray()
    line = 0
    while len(out) < size:
        out += b"%06d " % line + b" ".join(rng.choice(words) for _ in range(10)) + b"\n"
        line += 1
    return bytes(out[:size])


@dataclass(frozen=True)
class Payload:
    """Files for one partition: ``keep`` stay, ``stale`` are written, synced, deleted."""

    keep: dict[str, bytes]
    stale: dict[str, bytes]


def payload(seed: int, tag: str, scale: int = 1) -> Payload:
    """The deterministic regular files put on partition ``tag`` (a few MiB)."""
    rng = _rng(seed, "files:" + tag)
    keep = {
        "readme.txt": _text(rng, 20 * KiB + 123),
        f"{tag}.id": f"{tag} seed {seed}\n".encode(),
        "data/random-1.bin": rng.randbytes(scale * MiB + 17),
        "data/random-2.bin": rng.randbytes(300 * KiB),
        "data/zeros.bin": bytes(256 * KiB),
        "data/nested/deep/notes.txt": _text(rng, 5000),
        "data/nested/small.txt": b"x",
        "empty-file": b"",
    }
    stale = {
        "junk/stale-1.bin": rng.randbytes(scale * 2 * MiB),
        "junk/stale-2.bin": rng.randbytes(MiB + 5),
        "stale-top.txt": _text(rng, 64 * KiB),
    }
    return Payload(keep, stale)


def _write_files(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _write_payload_mounted(root: Path, p: Payload) -> None:
    _write_files(root, p.stale)
    _write_files(root, p.keep)
    syncfs(root)  # the stale bytes reach the disk before their files are deleted
    for rel in p.stale:
        (root / rel).unlink()
    junk = root / "junk"
    if junk.is_dir() and not any(junk.iterdir()):
        junk.rmdir()
    syncfs(root)


def write_raw(node: str, offset: int, data: bytes) -> None:
    """Write bytes at a disk offset, durably, and drop the node's cache."""
    fd = os.open(node, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    flush(node)


def _marker(magic: bytes, seed: int, tag: str, size: int) -> bytes:
    body = magic + _rng(seed, tag).randbytes(max(0, size - len(magic)))
    return body[:size]


def write_gap_marker(node: str, seed: int = 0) -> tuple[int, int]:
    """Fill the gap between the table and the first partition with a recognisable pattern.

    Returns (offset, length). The last 32 bytes carry an end marker, so a copy that
    stops short of the first partition is caught.
    """
    gap = gap_bytes(node)  # the oracle's own definition of the gap
    t = json.loads(run("sfdisk", "--json", node).stdout)["partitiontable"]
    ss = int(t.get("sectorsize", 512))
    end = min(p["start"] for p in t["partitions"]) * ss
    begin = end - len(gap)
    data = _marker(GAP_MAGIC, seed, "gap", len(gap) - 32) + b"END-OF-GAP-MARKER".ljust(32, b"!")
    write_raw(node, begin, data)
    return begin, len(data)


def write_boot_code(node: str, seed: int = 0) -> bytes:
    """Write a recognisable 440-byte boot code into LBA 0 (leaves signature and table)."""
    code = _marker(BOOT_MAGIC, seed, "bootcode", 440)
    write_raw(node, 0, code)
    return code


def _fill_random(part: str, seed: int, tag: str, length: int) -> None:
    """Stale non-zero bytes inside a partition before its filesystem is made."""
    write_raw(part, 0, _rng(seed, "fill:" + tag).randbytes(length))


@contextmanager
def _mount_rw(loops: LoopAttacher, part: str, fstype: str) -> Iterator[Path]:
    root = getattr(loops, "mount_root", None)
    if root is not None:
        Path(root).mkdir(parents=True, exist_ok=True)
    mp = Path(tempfile.mkdtemp(prefix="build-", dir=root))
    try:
        with mounted(part, fstype, readonly=False, mountpoint=mp) as path:
            yield path
    finally:
        with suppress(OSError):
            mp.rmdir()


def _sfdisk(node: str, script: str) -> dict[int, str]:
    run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", node, input=script)
    return partition_nodes(node)  # rescans: this kernel has no partition-table parser


# --------------------------------------------------------------------------- filesystems


def _populate_ext4(part: str, loops: LoopAttacher, seed: int, tag: str) -> None:
    """Payload plus the things only a POSIX filesystem has."""
    with _mount_rw(loops, part, "ext4") as root:
        _write_payload_mounted(root, payload(seed, tag))
        (root / "link-relative").symlink_to("readme.txt")
        (root / "link-absolute").symlink_to("/etc/hostname-dangling")
        (root / "link-dir").symlink_to("data/nested")
        os.link(root / "data/random-2.bin", root / "data/hardlink-to-random-2.bin")
        secret = root / "secret-0600"
        secret.write_bytes(b"only root may read this\n")
        secret.chmod(0o600)
        script = root / "run.sh"
        script.write_bytes(b"#!/bin/sh\necho hello\n")
        script.chmod(0o755)
        (root / "empty-dir").mkdir()
        private = root / "private-dir"
        private.mkdir()
        private.chmod(0o700)
        with open(root / "sparse.img", "wb") as f:
            f.seek(8 * MiB)
            f.write(b"tail of a sparse file\n")
            f.seek(MiB)
            f.write(b"middle\n")
        os.chown(secret, 1000, 1000)


def _mkfs_ext4(part: str, label: str, seed: int, tag: str, *extra: str) -> None:
    run(
        "mkfs.ext4", "-q", "-F", "-L", label, "-U", _uuid(seed, tag),
        "-E", f"lazy_itable_init=0,lazy_journal_init=0,hash_seed={_uuid(seed, tag + ':hash')}",
        *extra, part,
    )  # fmt: skip


def _ntfs_serial(part: str, seed: int) -> None:
    """Give an NTFS volume a seed-derived serial (mkfs.ntfs has no option for it).

    The serial sits at byte 0x48 of the boot sector and of its backup (the last sector).
    """
    serial = _rng(seed, "ntfs-serial").randbytes(8)
    ss = sector_size(part)
    for offset in (0, device_size(part) - ss):
        sector = bytearray(read_bytes(part, offset, ss))
        if sector[3:11] != b"NTFS    ":
            raise AssertionError(f"{part}: no NTFS boot sector at {offset}")
        sector[0x48:0x50] = serial
        write_raw(part, offset, bytes(sector))


def fat_payload(seed: int) -> Payload:
    rng = _rng(seed, "files:esp")
    efi = b"MZ" + rng.randbytes(200 * KiB)
    keep = {
        "EFI/BOOT/BOOTX64.EFI": efi,
        "EFI/debian/grubx64.efi": b"MZ" + rng.randbytes(150 * KiB),
        "EFI/debian/grub.cfg": b"search.fs_uuid 1234 root\nconfigfile $prefix/grub.cfg\n",
        "loader/loader.conf": b"timeout 3\ndefault debian\n",
        "README.TXT": _text(rng, 3000),
    }
    stale = {"OLDKERNEL.EFI": rng.randbytes(2 * MiB), "TMP/STALE.BIN": rng.randbytes(MiB)}
    return Payload(keep, stale)


def _populate_fat(part: str, seed: int) -> None:
    p = fat_payload(seed)
    stage = Path(tempfile.mkdtemp(prefix="build-fat-"))
    try:
        _write_files(stage / "stale", p.stale)
        _write_files(stage / "keep", p.keep)
        (stage / "keep" / "EMPTYDIR").mkdir()
        for sub in ("stale", "keep"):
            names = sorted(str(x) for x in (stage / sub).iterdir())
            run("mcopy", "-s", "-m", "-i", part, *names, "::/", env=MTOOLS_ENV)
        run("mattrib", "-i", part, "+h", "+s", "::/EFI/debian/grub.cfg", env=MTOOLS_ENV)
        run("mattrib", "-i", part, "+r", "::/README.TXT", env=MTOOLS_ENV)
        run("mdel", "-i", part, "::/OLDKERNEL.EFI", env=MTOOLS_ENV)
        run("mdeltree", "-i", part, "::/TMP", env=MTOOLS_ENV)
    finally:
        shutil.rmtree(stage)
    flush(part)


def _populate_plain(part: str, fstype: str, loops: LoopAttacher, seed: int, tag: str) -> None:
    with _mount_rw(loops, part, fstype) as root:
        _write_payload_mounted(root, payload(seed, tag))
        if fstype != "ntfs":
            (root / "link-relative").symlink_to("readme.txt")
        (root / "empty-dir").mkdir()


# --------------------------------------------------------------------------- disks

#: which payload() tag each builder puts on which partition ("esp": fat_payload())
PAYLOAD_TAGS: dict[str, dict[int, str]] = {
    "gpt": {1: "esp", 2: "root", 3: "data"},
    "mbr": {1: "mbr-ext4", 5: "xfs", 6: "btrfs"},
    "4k": {1: "4k-ext4", 2: "4k-xfs"},
}


def expected_payloads(kind: str, seed: int = 0) -> dict[int, Payload]:
    """Partition number -> the regular files a builder ("gpt", "mbr", "4k") wrote there."""
    return {
        num: fat_payload(seed) if tag == "esp" else payload(seed, tag)
        for num, tag in PAYLOAD_TAGS[kind].items()
    }


def build_gpt_disk(loops: LoopAttacher, path: Path, *, seed: int = 0) -> str:
    """GPT disk (500 MiB): p1 FAT32 ESP, p2 ext4 "root", p3 NTFS "DATA", p4 swap, free tail.

    Also a marker in the gap between the GPT entries and p1 (sectors 34..2047) and in
    the protective MBR's boot code. Returns the loop node.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        sparse_file(path.parent, path.name, GPT_DISK_SIZE)
    node = loops.attach(path)
    script = (
        "label: gpt\n"
        f"label-id: {_uuid(seed, 'gpt-disk')}\n"
        f"start=2048, size=64MiB, type={ESP_TYPE}, uuid={_uuid(seed, 'p1')}, "
        'name="EFI System Partition"\n'
        f"size=200MiB, type={LINUX_FS_TYPE}, uuid={_uuid(seed, 'p2')}, name=root, "
        'attrs="LegacyBIOSBootable"\n'
        f"size=150MiB, type={MS_BASIC_DATA_TYPE}, uuid={_uuid(seed, 'p3')}, "
        'name="Basic data partition"\n'
        f"size=32MiB, type={LINUX_SWAP_TYPE}, uuid={_uuid(seed, 'p4')}, name=swap, "
        'attrs="GUID:63"\n'
    )
    parts = _sfdisk(node, script)

    # p1: FAT32 ESP, written with mtools (no vfat in this kernel)
    volid = _uuid(seed, "esp")[:8]
    run("mkfs.fat", "-F", "32", "-n", "ESP", "-i", volid, parts[1])
    _populate_fat(parts[1], seed)

    # p2: ext4 root
    _mkfs_ext4(parts[2], "root", seed, "root")
    _populate_ext4(parts[2], loops, seed, "root")

    # p3: NTFS, files through ntfs-3g
    start = int(Path(f"/sys/class/block/{Path(parts[3]).name}/start").read_text())
    run("mkfs.ntfs", "-Q", "-F", "-L", "DATA", "-p", str(start), "-H", "255", "-S", "63",
        parts[3])  # fmt: skip
    _ntfs_serial(parts[3], seed)
    _populate_plain(parts[3], "ntfs", loops, seed, "data")

    # p4: swap over stale bytes (an imager recreates swap, it does not copy it)
    _fill_random(parts[4], seed, "swap", 2 * MiB)
    run("mkswap", "-L", "SWAP", "-U", _uuid(seed, "swap"), parts[4])

    write_gap_marker(node, seed)
    write_boot_code(node, seed)
    flush_all(node)
    return node


def build_mbr_disk(loops: LoopAttacher, path: Path, *, seed: int = 0) -> str:
    """DOS disk (600 MiB): boot code marker, p1 ext4 (bootable), p2 extended with
    p5 xfs "XFSDATA" and p6 btrfs "BTR"; a marker fills the gap after the MBR.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        sparse_file(path.parent, path.name, MBR_DISK_SIZE)
    node = loops.attach(path)
    disk_id = "0x" + _uuid(seed, "mbr-disk")[:8]
    script = (
        "label: dos\n"
        f"label-id: {disk_id}\n"
        "start=2048, size=100MiB, type=83, bootable\n"
        "size=490MiB, type=5\n"
        f"{node}p5 : size=320MiB, type=83\n"
        f"{node}p6 : size=160MiB, type=83\n"
    )
    parts = _sfdisk(node, script)

    _mkfs_ext4(parts[1], "boot", seed, "mbr-ext4")
    _populate_ext4(parts[1], loops, seed, "mbr-ext4")

    _fill_random(parts[5], seed, "xfs", MiB)  # stale bytes under the new filesystem
    run("mkfs.xfs", "-q", "-f", "-K", "-L", "XFSDATA", "-m", f"uuid={_uuid(seed, 'xfs')}",
        parts[5])  # fmt: skip
    _populate_plain(parts[5], "xfs", loops, seed, "xfs")

    # no -U: mkfs.btrfs refuses a UUID any attached device already carries (another
    # build with the same seed, a raw copy), so the btrfs UUID is not seed-derived
    run("mkfs.btrfs", "-q", "-f", "-K", "-L", "BTR", parts[6])
    _populate_plain(parts[6], "btrfs", loops, seed, "btrfs")

    write_gap_marker(node, seed)
    write_boot_code(node, seed)
    flush_all(node)
    return node


def build_4k_disk(loops: LoopAttacher, path: Path, *, seed: int = 0) -> str:
    """4096-byte-sector GPT disk (400 MiB): p1 ext4 (-b 4096) "ROOT4K", p2 xfs "XFS4K"."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        sparse_file(path.parent, path.name, DISK_4K_SIZE)
    node = loops.attach(path, sector_size=4096)
    script = (
        "label: gpt\n"
        f"label-id: {_uuid(seed, 'gpt4k-disk')}\n"
        f"start=256, size=64MiB, type={LINUX_FS_TYPE}, uuid={_uuid(seed, '4k-p1')}, name=root4k\n"
        f"size=320MiB, type={LINUX_FS_TYPE}, uuid={_uuid(seed, '4k-p2')}, name=xfs4k\n"
    )
    parts = _sfdisk(node, script)

    _mkfs_ext4(parts[1], "ROOT4K", seed, "4k-ext4", "-b", "4096")
    _populate_ext4(parts[1], loops, seed, "4k-ext4")

    run("mkfs.xfs", "-q", "-f", "-K", "-s", "size=4096", "-L", "XFS4K",
        "-m", f"uuid={_uuid(seed, '4k-xfs')}", parts[2])  # fmt: skip
    _populate_plain(parts[2], "xfs", loops, seed, "4k-xfs")

    write_gap_marker(node, seed)
    write_boot_code(node, seed)
    flush_all(node)
    return node


def mutate_disk(node: str, *, seed: int = 1) -> None:
    """A small change on the first ext4 partition: a new ~1 MiB random file and 4 KiB of
    ``readme.txt`` overwritten (for dedup tests: a second image stores little)."""
    for part in partition_nodes(node).values():
        if blkid(part).get("TYPE") == "ext4":
            break
    else:
        raise AssertionError(f"{node}: no ext4 partition to mutate")
    rng = _rng(seed, "mutate")
    mp = Path(tempfile.mkdtemp(prefix="mutate-"))
    try:
        with mounted(part, "ext4", readonly=False, mountpoint=mp) as root:
            (root / f"mutation-{seed}.bin").write_bytes(rng.randbytes(MiB + 99))
            with open(root / "readme.txt", "r+b") as f:
                f.seek(8 * KiB)
                f.write(rng.randbytes(4 * KiB))
    finally:
        with suppress(OSError):
            mp.rmdir()
    flush_all(node)

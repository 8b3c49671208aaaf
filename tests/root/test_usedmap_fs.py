"""used_map on real filesystems in sparse files.

The proof that a map is right: copy ONLY its ranges into a zero-filled file of the same size,
then the filesystem's own checker must pass on the copy and every file must read back the same.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from appliance.errors import ToolFailed
from appliance.fs.extmap import ext_map
from appliance.fs.fatmap import fat_map
from appliance.fs.usedmap import PARTCLONE_PROGRAM, UsedMap, partclone_map, used_map

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop mounts)"),
]

MiB = 1 << 20


def _need(*programs: str) -> None:
    missing = [
        p
        for p in programs
        if shutil.which(p) is None and shutil.which(p, path="/usr/sbin:/sbin") is None
    ]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def _run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as file:
        file.truncate(size)
    return path


def _make_files(root: Path) -> int:
    """A small tree of files with random content; returns their total size in bytes."""
    rng = random.Random(1234)
    (root / "sub" / "deeper").mkdir(parents=True)
    sizes = {"big.bin": 3 * MiB + 123, "sub/mid.bin": 700_000, "sub/deeper/odd.bin": 4097}
    for name, size in sizes.items():
        (root / name).write_bytes(rng.randbytes(size))
    for index in range(40):
        (root / "sub" / f"note{index:02}.txt").write_text(f"note {index}\n" * (index + 1))
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _copy_mapped(
    source: Path, target: Path, umap: UsedMap, skip: Sequence[tuple[int, int]] = ()
) -> Path:
    """A same-size sparse file holding only the mapped ranges of `source` (minus `skip`)."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        dst.truncate(umap.size)
        for offset, length in umap.ranges:
            if (offset, length) in skip:
                continue
            src.seek(offset)
            dst.seek(offset)
            dst.write(src.read(length))
    return target


@contextmanager
def _mounted(image: Path, mountpoint: Path, readonly: bool) -> Iterator[Path]:
    mountpoint.mkdir(exist_ok=True)
    _run("mount", "-o", "loop,ro" if readonly else "loop", image, mountpoint)
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def _check_map(umap: UsedMap, align: int, file_bytes: int) -> None:
    assert umap.method == "partclone"
    assert umap.ranges, "a filesystem always has some used blocks"
    assert all(o % align == 0 and (ln % align == 0 or o + ln == umap.size) for o, ln in umap.ranges)
    assert all(a[0] + a[1] < b[0] for a, b in zip(umap.ranges, umap.ranges[1:], strict=False))
    assert umap.ranges[-1][0] + umap.ranges[-1][1] <= umap.size
    assert file_bytes < umap.used_bytes < umap.size // 2


def _mounted_fs_roundtrip(
    tmp_path: Path, fstype: str, mkfs: list[str], size: int, align: int, checker: list[str]
) -> None:
    """mkfs, files written through a loop mount, map, copy, check, read back."""
    image = _sparse(tmp_path / f"{fstype}.img", size)
    _run(*mkfs, image)
    files = tmp_path / "files"
    file_bytes = _make_files(files)
    with _mounted(image, tmp_path / "mnt", readonly=False) as mnt:
        shutil.copytree(files, mnt / "data")
        (mnt / "deleted.bin").write_bytes(os.urandom(2 * MiB))
        _run("sync")
        (mnt / "deleted.bin").unlink()  # freed blocks keep stale data: the map must skip them
    umap = used_map(str(image), fstype, size, align)
    _check_map(umap, align, file_bytes)
    copy = _copy_mapped(image, tmp_path / "copy.img", umap)
    _run(*checker, copy)
    with _mounted(copy, tmp_path / "mnt", readonly=True) as mnt:
        assert _tree(mnt / "data") == _tree(files)


def test_ext4(tmp_path: Path) -> None:
    _need("mkfs.ext4", "e2fsck", PARTCLONE_PROGRAM["ext4"])
    size = 64 * MiB
    files = tmp_path / "files"
    file_bytes = _make_files(files)
    image = _sparse(tmp_path / "ext4.img", size)
    _run("mkfs.ext4", "-q", "-d", files, image)  # 1 KiB blocks: ranges start at ...400
    with _mounted(image, tmp_path / "mnt", readonly=False) as mnt:
        (mnt / "later.bin").write_bytes(os.urandom(MiB))
        (mnt / "gone.bin").write_bytes(os.urandom(2 * MiB))
        _run("sync")
        (mnt / "gone.bin").unlink()
        shutil.copy(mnt / "later.bin", files / "later.bin")
    umap = used_map(str(image), "ext4", size, 4096)
    _check_map(umap, 4096, file_bytes + MiB)
    copy = _copy_mapped(image, tmp_path / "copy.img", umap)
    _run("e2fsck", "-fn", copy)
    with _mounted(copy, tmp_path / "mnt", readonly=True) as mnt:
        tree = _tree(mnt)
        tree.pop("lost+found", None)
        assert tree == _tree(files)


@pytest.mark.parametrize(
    "mkfs",
    [
        ["mkfs.ext2", "-q", "-F", "-b", "1024"],
        ["mkfs.ext3", "-q", "-F"],
        ["mkfs.ext4", "-q", "-F"],
        ["mkfs.ext4", "-q", "-F", "-O", "^metadata_csum,^uninit_bg,^flex_bg"],
        ["mkfs.ext4", "-q", "-F", "-O", "meta_bg,^resize_inode"],
    ],
    ids=["ext2-1k", "ext3", "ext4", "ext4-no-checksums", "ext4-meta-bg"],
)
def test_ext_map_from_dumpe2fs_is_partclones_map(tmp_path: Path, mkfs: list[str]) -> None:
    """The ext family is mapped from dumpe2fs (fs/extmap.py): on each layout it must give
    exactly the ranges and known zeros partclone's own map gives, and the copy of only those
    ranges must pass e2fsck with every file equal."""
    _need("dumpe2fs", "e2fsck", PARTCLONE_PROGRAM["ext4"])
    size = 300 * MiB
    _mounted_fs_roundtrip(tmp_path, "ext4", mkfs, size, 4096, ["e2fsck", "-fn"])
    image = str(tmp_path / "ext4.img")
    assert ext_map(image) is not None  # the fast map was used, not the fallback
    ours, theirs = used_map(image, "ext4", size, 4096), partclone_map(image, "ext4", size, 4096)
    assert ours.ranges == theirs.ranges
    assert ours.zeros == theirs.zeros


def test_xfs(tmp_path: Path) -> None:
    _need("mkfs.xfs", "xfs_repair", PARTCLONE_PROGRAM["xfs"])
    _mounted_fs_roundtrip(
        tmp_path, "xfs", ["mkfs.xfs", "-q"], 300 * MiB, 512, ["xfs_repair", "-n", "-f"]
    )


def test_btrfs(tmp_path: Path) -> None:
    _need("mkfs.btrfs", "btrfs", PARTCLONE_PROGRAM["btrfs"])
    _mounted_fs_roundtrip(
        tmp_path, "btrfs", ["mkfs.btrfs", "-q"], 128 * MiB, 4096, ["btrfs", "check", "--readonly"]
    )


def _ntfs_image(tmp_path: Path, size: int) -> tuple[Path, dict[str, bytes]]:
    _need("mkfs.ntfs", "ntfscp", "ntfscat", "ntfsfix", PARTCLONE_PROGRAM["ntfs"])
    image = _sparse(tmp_path / "ntfs.img", size)
    _run("mkfs.ntfs", "-q", "-Q", "-F", image)
    files = tmp_path / "files"
    _make_files(files)
    wanted = {p.name: p.read_bytes() for p in files.rglob("*.bin")}
    for name in wanted:
        _run("ntfscp", image, next(files.rglob(name)), name)
    return image, wanted


def _boot_geometry(image: Path) -> tuple[int, int]:
    with open(image, "rb") as file:
        boot = file.read(512)
    (bytes_per_sector,) = struct.unpack_from("<H", boot, 0x0B)
    (total_sectors,) = struct.unpack_from("<Q", boot, 0x28)
    return total_sectors, bytes_per_sector


def _covers(umap: UsedMap, offset: int, length: int) -> bool:
    return any(o <= offset and offset + length <= o + ln for o, ln in umap.ranges)


def test_ntfs(tmp_path: Path) -> None:
    size = 64 * MiB
    image, wanted = _ntfs_image(tmp_path, size)
    umap = used_map(str(image), "ntfs", size)
    _check_map(umap, 512, sum(len(data) for data in wanted.values()))
    total_sectors, bytes_per_sector = _boot_geometry(image)
    assert _covers(umap, size - 512, 512)
    assert _covers(umap, total_sectors * bytes_per_sector, bytes_per_sector)
    copy = _copy_mapped(image, tmp_path / "copy.img", umap)
    _run("ntfsfix", "-n", copy)
    for name, data in wanted.items():
        assert (
            subprocess.run(["ntfscat", str(copy), name], capture_output=True, check=True).stdout
            == data
        )
    # control: without the backup boot sector (not in partclone's map) the checker fails
    last = next(r for r in umap.ranges if r[0] + r[1] == size)
    if last[1] == 512:
        bad = _copy_mapped(image, tmp_path / "bad.img", umap, skip=[last])
        assert subprocess.run(["ntfsfix", "-n", str(bad)], capture_output=True).returncode != 0


def test_ntfs_volume_smaller_than_partition(tmp_path: Path) -> None:
    image, _ = _ntfs_image(tmp_path, 64 * MiB)
    with open(image, "r+b") as file:
        file.truncate(65 * MiB)  # the partition grew, the volume did not
    size = 65 * MiB
    umap = used_map(str(image), "ntfs", size, 4096)
    total_sectors, bytes_per_sector = _boot_geometry(image)
    backup = total_sectors * bytes_per_sector
    assert backup < size - 4096
    assert _covers(umap, backup, bytes_per_sector) and _covers(umap, size - 512, 512)
    copy = _copy_mapped(image, tmp_path / "copy.img", umap)
    with open(image, "rb") as src, open(copy, "rb") as dst:
        src.seek(backup)
        dst.seek(backup)
        assert dst.read(512) == src.read(512)
        dst.seek(0)
        assert dst.read(512)[3:11] == b"NTFS    "


def _set_ntfs_dirty(image: Path) -> None:
    """Set VOLUME_IS_DIRTY in $Volume's $VOLUME_INFORMATION, in $MFT and $MFTMirr."""
    with open(image, "r+b") as file:
        boot = file.read(512)
        cluster = struct.unpack_from("<H", boot, 0x0B)[0] * boot[0x0D]
        mft_lcn, mirror_lcn = struct.unpack_from("<qq", boot, 0x30)
        raw = struct.unpack_from("<b", boot, 0x40)[0]
        record_size = raw * cluster if raw > 0 else 1 << -raw
        for lcn in (mft_lcn, mirror_lcn):
            where = lcn * cluster + 3 * record_size  # record 3 is $Volume
            file.seek(where)
            record = bytearray(file.read(record_size))
            assert record[:4] == b"FILE"
            attr = struct.unpack_from("<H", record, 0x14)[0]
            while struct.unpack_from("<I", record, attr)[0] != 0x70:
                assert struct.unpack_from("<I", record, attr)[0] != 0xFFFFFFFF
                attr += struct.unpack_from("<I", record, attr + 4)[0]
            flags_at = attr + struct.unpack_from("<H", record, attr + 0x14)[0] + 0x0A
            assert flags_at % 512 < 510  # not under a fixup word
            record[flags_at] |= 0x01
            file.seek(where)
            file.write(record)


def test_dirty_ntfs_is_copied_raw(tmp_path: Path) -> None:
    size = 64 * MiB
    image, _ = _ntfs_image(tmp_path, size)
    _set_ntfs_dirty(image)
    assert used_map(str(image), "ntfs", size) == UsedMap(size, ((0, size),), "raw")


def test_hibernated_ntfs_is_mapped(tmp_path: Path) -> None:
    size = 64 * MiB
    image, _ = _ntfs_image(tmp_path, size)
    hiberfil = tmp_path / "hiberfil.sys"
    hiberfil.write_bytes(b"HIBR" + bytes(8188))
    _run("ntfscp", image, hiberfil, "hiberfil.sys")
    assert used_map(str(image), "ntfs", size).method == "partclone"


def test_fat32(tmp_path: Path) -> None:
    _need("mkfs.fat", "fsck.fat", "mcopy", PARTCLONE_PROGRAM["vfat"])
    size = 40 * MiB
    image = _sparse(tmp_path / "fat.img", size)
    _run("mkfs.fat", "-F", "32", image)
    files = tmp_path / "files"
    file_bytes = _make_files(files)
    mtools = {"MTOOLS_SKIP_CHECK": "1"}
    _run("mcopy", "-s", "-i", image, files / "big.bin", files / "sub", "::/", env=mtools)
    umap = used_map(str(image), "vfat", size, 4096)
    _check_map(umap, 4096, file_bytes)
    copy = _copy_mapped(image, tmp_path / "copy.img", umap)
    _run("fsck.fat", "-n", copy)
    out = tmp_path / "out"
    out.mkdir()
    _run("mcopy", "-s", "-n", "-i", copy, "::/*", out, env=mtools)
    assert _tree(out) == _tree(files)


def _fat_image(tmp_path: Path, size: int, mkfs: list[str]) -> tuple[Path, Path]:
    """A FAT filesystem holding the test tree, with a file written and deleted again (its
    clusters are free and hold stale bytes) and a fragmented file; returns (image, files)."""
    image = _sparse(tmp_path / "fat.img", size)
    _run("mkfs.fat", *mkfs, image)
    files = tmp_path / "files"
    _make_files(files)
    mtools = {"MTOOLS_SKIP_CHECK": "1"}
    stale = tmp_path / "stale.bin"
    stale.write_bytes(os.urandom(MiB))
    _run("mcopy", "-i", image, stale, "::/stale.bin", env=mtools)
    _run("mcopy", "-s", "-i", image, files / "big.bin", files / "sub", "::/", env=mtools)
    _run("mdel", "-i", image, "::/stale.bin", env=mtools)
    (files / "after.bin").write_bytes(os.urandom(3 * MiB // 2))  # into the freed hole and on
    _run("mcopy", "-i", image, files / "after.bin", "::/after.bin", env=mtools)
    return image, files


def _fat_files(image: Path, out: Path) -> dict[str, bytes]:
    out.mkdir()
    _run("mcopy", "-s", "-n", "-i", image, "::/*", out, env={"MTOOLS_SKIP_CHECK": "1"})
    return _tree(out)


@pytest.mark.parametrize(
    ("mkfs", "mib"),
    [
        (["-F", "12", "-s", "16"], 24),
        (["-F", "16"], 48),
        (["-F", "16", "-S", "4096", "-s", "1"], 48),
        (["-F", "32"], 48),  # fewer clusters than the specification's FAT32 (mkfs.fat warns)
        (["-F", "32", "-s", "1"], 48),
        (["-F", "32", "-S", "4096", "-s", "1"], 300),
    ],
    ids=["fat12", "fat16", "fat16-4k-sectors", "fat32", "fat32-512-clusters", "fat32-4k-sectors"],
)
def test_fat_map_from_its_table(tmp_path: Path, mkfs: list[str], mib: int) -> None:
    """FAT is mapped from its own table read whole (fs/fatmap.py): a copy of only its ranges
    passes fsck.fat with every file equal, and the ranges are exactly partclone's."""
    _need("mkfs.fat", "fsck.fat", "mcopy", "mdel", PARTCLONE_PROGRAM["vfat"])
    size = mib * MiB
    image, files = _fat_image(tmp_path, size, mkfs)
    assert fat_map(str(image), size) is not None  # the table was read, not partclone's map
    umap = used_map(str(image), "vfat", size, 4096)
    _check_map(umap, 4096, sum(len(b) for b in _tree(files).values()))
    copy = _copy_mapped(image, tmp_path / "copy.img", umap)
    _run("fsck.fat", "-n", copy)
    assert _fat_files(copy, tmp_path / "out") == _tree(files)
    assert umap.ranges == partclone_map(str(image), "vfat", size, 4096).ranges


def test_fat_map_leaves_out_bad_clusters_and_refuses_a_dirty_table(tmp_path: Path) -> None:
    """A cluster marked bad in the table is not read (as partclone does); a FAT32 whose clean
    flag is cleared (pulled out without unmounting) is left to partclone, which refuses it, so
    the save copies it whole."""
    _need("mkfs.fat", "mcopy", "mdel", PARTCLONE_PROGRAM["vfat"])
    size = 48 * MiB
    image, _ = _fat_image(tmp_path, size, ["-F", "32", "-s", "1"])
    boot = image.read_bytes()[:512]
    reserved, fats = int.from_bytes(boot[14:16], "little"), boot[16]
    per_fat = int.from_bytes(boot[36:40], "little")
    data_start = reserved + fats * per_fat
    clusters = (size // 512 - data_start) - 10
    last = 2 + clusters - 1  # a free cluster near the end, then marked bad in every copy
    with open(image, "r+b") as disk:
        for copy in range(fats):
            disk.seek((reserved + copy * per_fat) * 512 + last * 4)
            disk.write((0x0FFFFFF7).to_bytes(4, "little"))
    ours = used_map(str(image), "vfat", size, 512)
    assert ours.ranges == partclone_map(str(image), "vfat", size, 512).ranges
    bad_at = (data_start + last - 2) * 512
    assert not any(start <= bad_at < start + length for start, length in ours.ranges)

    with open(image, "r+b") as disk:  # entry 1's clean bit cleared: not cleanly unmounted
        for copy in range(fats):
            disk.seek((reserved + copy * per_fat) * 512 + 4)
            entry = int.from_bytes(disk.read(4), "little") & ~0x08000000
            disk.seek((reserved + copy * per_fat) * 512 + 4)
            disk.write(entry.to_bytes(4, "little"))
    assert fat_map(str(image), size) is None
    with pytest.raises(ToolFailed):
        used_map(str(image), "vfat", size, 512)


def test_exfat_empty(tmp_path: Path) -> None:
    _need("mkfs.exfat", "fsck.exfat", PARTCLONE_PROGRAM["exfat"])
    size = 32 * MiB
    image = _sparse(tmp_path / "exfat.img", size)
    _run("mkfs.exfat", image)
    umap = used_map(str(image), "exfat", size)
    _check_map(umap, 512, 0)
    _run("fsck.exfat", "-n", _copy_mapped(image, tmp_path / "copy.img", umap))


def test_swap_is_not_copied(tmp_path: Path) -> None:
    _need("mkswap")
    image = _sparse(tmp_path / "swap.img", 16 * MiB)
    _run("mkswap", image)
    assert used_map(str(image), "swap", 16 * MiB) == UsedMap(16 * MiB, (), "swap")


def test_unformatted_is_raw_or_refused(tmp_path: Path) -> None:
    _need(PARTCLONE_PROGRAM["ext4"])
    image = tmp_path / "random.img"
    image.write_bytes(os.urandom(4 * MiB))
    assert used_map(str(image), None, 4 * MiB, 4096) == UsedMap(4 * MiB, ((0, 4 * MiB),), "raw")
    # blkid said ext4 but partclone finds none: one sentence naming the node and filesystem
    with pytest.raises(ToolFailed) as caught:
        used_map(str(image), "ext4", 4 * MiB)
    assert str(caught.value) == (
        f"partclone could not read the ext4 filesystem on {image}: "
        "Couldn't find valid filesystem superblock."
    )

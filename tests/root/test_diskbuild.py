"""The test toolkit tests itself: the builders build what they promise, and the oracle
(diskcompare.assert_equivalent) accepts a faithful copy and rejects every kind of
difference an imager could introduce."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from kit.diskbuild import (
    BOOT_MAGIC,
    GAP_MAGIC,
    MiB,
    build_4k_disk,
    build_gpt_disk,
    build_mbr_disk,
    copy_image,
    expected_payloads,
    mutate_disk,
    write_raw,
)
from kit.diskcompare import (
    assert_equivalent,
    blkid,
    boot_code,
    device_size,
    file_tree,
    fsck_all,
    gap_bytes,
    identities,
    mounted,
    ntfs_backup_boot_sector,
    partition_nodes,
    read_bytes,
    run,
    sector_size,
    sgdisk_verify,
    table,
)
from kit.loops import Loops

pytestmark = [pytest.mark.root, pytest.mark.slow]

NEW_UUID = "11111111-2222-3333-4444-555555555555"

Builder = Callable[..., str]
BUILDERS: dict[str, tuple[Builder, int]] = {
    "gpt": (build_gpt_disk, 512),
    "mbr": (build_mbr_disk, 512),
    "4k": (build_4k_disk, 4096),
}


def _image_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(8 * 1024 * 1024):
            h.update(block)
    return h.hexdigest()


def _raw_copy(
    loops: Loops, src: Path, dst: Path, sector: int = 512, size: int | None = None
) -> str:
    # the builders return with everything written to the image file
    copy_image(src, dst, size)
    return loops.attach(dst, sector_size=sector)


def _build(loops: Loops, tmp_path: Path, kind: str) -> tuple[str, Path]:
    builder, _ = BUILDERS[kind]
    path = tmp_path / f"{kind}.img"
    return builder(loops, path), path


# ---------------------------------------------------------------- what the builders build


@pytest.mark.parametrize("kind", BUILDERS)
def test_builder_layout_files_and_stale_bytes(loops: Loops, tmp_path: Path, kind: str) -> None:
    node, _ = _build(loops, tmp_path, kind)
    assert sector_size(node) == BUILDERS[kind][1]
    fsck_all(node)
    t = table(node)
    ids = identities(node)
    parts = partition_nodes(node)
    if kind == "gpt":
        sgdisk_verify(node)
        assert [ids[n]["TYPE"] for n in (1, 2, 3, 4)] == ["vfat", "ext4", "ntfs", "swap"]
        assert [ids[n]["LABEL"] for n in (1, 2, 3, 4)] == ["ESP", "root", "DATA", "SWAP"]
        assert ids[1]["VERSION"] == "FAT32"
        assert t["partitions"][1]["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        assert t["partitions"][3]["type"] == "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
        last = t["partitions"][4]
        tail = (t["lastlba"] - (last["start"] + last["size"]) + 1) * 512
        assert 45 * MiB < tail < 60 * MiB, "an unallocated tail of ~50 MiB"
        assert ntfs_backup_boot_sector(parts[3])[3:11] == b"NTFS    "
    elif kind == "mbr":
        assert t["label"] == "dos"
        assert t["partitions"][1].get("bootable") is True
        assert t["partitions"][2]["type"] == "5"
        assert (ids[5]["TYPE"], ids[5]["LABEL"]) == ("xfs", "XFSDATA")
        assert (ids[6]["TYPE"], ids[6]["LABEL"]) == ("btrfs", "BTR")
    else:
        sgdisk_verify(node)
        assert [ids[n]["TYPE"] for n in (1, 2)] == ["ext4", "xfs"]
        assert ids[1]["BLOCK_SIZE"] == "4096" and ids[2]["BLOCK_SIZE"] == "4096"

    assert boot_code(node).startswith(BOOT_MAGIC)
    gap = gap_bytes(node)
    assert gap.startswith(GAP_MAGIC) and gap.rstrip(b"!").endswith(b"END-OF-GAP-MARKER")
    first_start = min(p["start"] for p in t["partitions"].values()) * sector_size(node)
    assert len(gap) == first_start - (34 * 512 if kind == "gpt" else 512 if kind == "mbr"
                                      else 6 * 4096)  # fmt: skip

    for num, expected in expected_payloads(kind).items():
        fstype = ids[num]["TYPE"]
        tree = file_tree(parts[num], fstype)
        for rel, data in expected.keep.items():
            assert tree[rel].kind == "file"
            assert tree[rel].size == len(data)
            assert tree[rel].digest == hashlib.sha256(data).hexdigest(), rel
        for rel in expected.stale:
            assert rel not in tree
        # the deleted files' bytes are still there, in free space
        raw = read_bytes(parts[num], 0, device_size(parts[num]))
        big = max(expected.stale.values(), key=len)
        samples = [big[i : i + 512] for i in range(0, len(big) - 512, len(big) // 16)]
        found = sum(raw.find(chunk) >= 0 for chunk in samples)
        assert found >= len(samples) // 2, f"partition {num}: stale bytes were not left behind"

    if kind in ("gpt", "mbr", "4k"):
        tree = file_tree(parts[1] if kind != "gpt" else parts[2], "ext4")
        assert tree["secret-0600"].mode == 0o600
        assert tree["link-relative"] == ("symlink", 0o777, 10, "readme.txt")
        assert tree["link-absolute"].digest == "/etc/hostname-dangling"
        assert tree["empty-dir"].kind == "dir"
        assert tree["data/hardlink-to-random-2.bin"] == tree["data/random-2.bin"]
        assert tree["sparse.img"].size == 8 * MiB + 22
    if kind == "gpt":
        esp = file_tree(parts[1], "vfat")
        assert esp["EFI/BOOT/BOOTX64.EFI"].kind == "file"
        assert esp["EMPTYDIR"].kind == "dir"
        assert esp["EFI/debian/grub.cfg"].mode == 0x20 | 0x02 | 0x04  # archive, hidden, system
        assert esp["README.TXT"].mode == 0x20 | 0x01  # archive, read-only


def test_builds_are_deterministic(loops: Loops, tmp_path: Path) -> None:
    a = build_4k_disk(loops, tmp_path / "a.img", seed=5)
    b = build_4k_disk(loops, tmp_path / "b.img", seed=5)
    assert table(a) == table(b)
    ids_a, ids_b = identities(a), identities(b)
    assert ids_a == ids_b
    pa, pb = partition_nodes(a), partition_nodes(b)
    for num in pa:
        fstype = ids_a[num]["TYPE"]
        assert file_tree(pa[num], fstype) == file_tree(pb[num], fstype)
    c = build_4k_disk(loops, tmp_path / "c.img", seed=6)
    assert table(c) != table(a)


# ---------------------------------------------------------------- the oracle accepts copies


@pytest.mark.parametrize("kind", BUILDERS)
def test_self_and_raw_copy_are_equivalent(loops: Loops, tmp_path: Path, kind: str) -> None:
    node, path = _build(loops, tmp_path, kind)
    before = _image_digest(path)
    assert_equivalent(node, node)
    assert _image_digest(path) == before, "the oracle (read-only mounts, fsck) wrote to the disk"
    copy = _raw_copy(loops, path, tmp_path / "copy.img", BUILDERS[kind][1])
    copy_digest = _image_digest(tmp_path / "copy.img")
    assert_equivalent(node, copy, same_size=True)
    assert _image_digest(tmp_path / "copy.img") == copy_digest
    loops.detach(copy)


@pytest.mark.parametrize("kind", ["gpt", "4k"])
def test_larger_target_needs_backup_gpt_at_the_end(loops: Loops, tmp_path: Path, kind: str) -> None:
    node, path = _build(loops, tmp_path, kind)
    bigger = device_size(node) + 64 * MiB
    copy = _raw_copy(loops, path, tmp_path / "big.img", BUILDERS[kind][1], size=bigger)
    with pytest.raises(AssertionError, match="sgdisk -v"):
        sgdisk_verify(copy)
    with pytest.raises(AssertionError, match=r"sgdisk -v \S+ reports problems"):
        assert_equivalent(node, copy, same_size=False)
    run("sgdisk", "-e", copy)  # move the backup header to the real end
    assert_equivalent(node, copy, same_size=False)
    with pytest.raises(AssertionError, match="disk size"):
        assert_equivalent(node, copy, same_size=True)


def test_mbr_larger_target(loops: Loops, tmp_path: Path) -> None:
    node, path = _build(loops, tmp_path, "mbr")
    copy = _raw_copy(loops, path, tmp_path / "big.img", size=device_size(node) + 32 * MiB)
    assert_equivalent(node, copy, same_size=False)


def test_grown_last_partition(loops: Loops, tmp_path: Path) -> None:
    node, path = _build(loops, tmp_path, "4k")
    bigger = device_size(node) + 64 * MiB
    copy = _raw_copy(loops, path, tmp_path / "big.img", 4096, size=bigger)
    run("sgdisk", "-e", copy)
    run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", "-N", "2", copy, input=", +\n")
    parts = partition_nodes(copy)
    with mounted(parts[2], "xfs", readonly=False) as mp:
        run("xfs_growfs", mp)
    with pytest.raises(AssertionError, match=r"partition 2 'size': \d+ != \d+"):
        assert_equivalent(node, copy, same_size=False)
    assert_equivalent(node, copy, same_size=False, resized={2})


def test_mutate_disk_changes_one_partition(loops: Loops, tmp_path: Path) -> None:
    node, path = _build(loops, tmp_path, "gpt")
    copy = _raw_copy(loops, path, tmp_path / "copy.img")
    mutate_disk(copy)
    with pytest.raises(AssertionError) as err:
        assert_equivalent(node, copy)
    lines = [ln for ln in str(err.value).splitlines()[1:] if ln.strip()]
    assert lines and all("partition 2 (ext4) file '" in ln for ln in lines), str(err.value)
    assert "mutation-1.bin" in str(err.value) and "readme.txt" in str(err.value)


# ---------------------------------------------------------------- the oracle rejects differences


def _ext4_content(node: str) -> None:
    with mounted(partition_nodes(node)[2], "ext4", readonly=False) as mp:
        data = bytearray((mp / "data/random-1.bin").read_bytes())
        data[12345] ^= 0xFF
        (mp / "data/random-1.bin").write_bytes(bytes(data))


def _ntfs_content(node: str) -> None:
    with mounted(partition_nodes(node)[3], "ntfs", readonly=False) as mp:
        (mp / "data/nested/small.txt").write_bytes(b"y")


def _fat_content(node: str) -> None:
    part = partition_nodes(node)[1]
    src = Path(f"/tmp/fat-mutation-{os.getpid()}.txt")
    src.write_bytes(b"changed\n")
    try:
        run("mcopy", "-o", "-i", part, src, "::/loader/loader.conf",
            env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})  # fmt: skip
    finally:
        src.unlink()


def _ext4_label(node: str) -> None:
    run("e2label", partition_nodes(node)[2], "other")


def _fat_attr(node: str) -> None:
    run("mattrib", "-i", partition_nodes(node)[1], "-r", "::/README.TXT",
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})  # fmt: skip


def _fat_label(node: str) -> None:
    run("fatlabel", partition_nodes(node)[1], "OTHER")


def _swap_uuid(node: str) -> None:
    run("swaplabel", "-U", NEW_UUID, partition_nodes(node)[4])


def _gpt_name(node: str) -> None:
    run("sgdisk", "-c", "3:renamed", node)


def _gpt_guid(node: str) -> None:
    run("sgdisk", "-u", f"2:{NEW_UUID}", node)


def _flip(node: str, offset: int) -> None:
    write_raw(node, offset, bytes([read_bytes(node, offset, 1)[0] ^ 0xFF]))


def _gap_end(node: str) -> None:
    _flip(node, 2047 * 512 + 100)  # last sector before p1


def _gap_start(node: str) -> None:
    _flip(node, 34 * 512)


def _boot_code(node: str) -> None:
    _flip(node, 300)


def _ntfs_backup(node: str) -> None:
    part = partition_nodes(node)[3]
    _flip(part, device_size(part) - 512 + 0x1F0)  # inside the boot code area


def _ext4_corrupt(node: str) -> None:
    part = partition_nodes(node)[2]
    run("debugfs", "-w", "-R", "set_inode_field /readme.txt links_count 7", part)


MUTATIONS: dict[str, tuple[Callable[[str], None], str]] = {
    "ext4-file-content": (_ext4_content, r"partition 2 \(ext4\) file 'data/random-1.bin': Entry"),
    "ntfs-file-content": (
        _ntfs_content,
        r"partition 3 \(ntfs\) file 'data/nested/small.txt': Entry",
    ),
    "fat-file-content": (_fat_content, r"partition 1 \(vfat\) file 'loader/loader.conf': Entry"),
    "fat-attribute": (_fat_attr, r"partition 1 \(vfat\) file 'README.TXT': .*mode=33"),
    "ext4-label": (_ext4_label, r"identity 2 'LABEL': 'root' != 'other'"),
    "fat-label": (_fat_label, r"identity 1 'LABEL': 'ESP' != 'OTHER'"),
    "swap-uuid": (_swap_uuid, rf"identity 4 'UUID': '[0-9a-f-]+' != '{NEW_UUID}'"),
    "gpt-partition-name": (_gpt_name, r"partition 3 'name': 'Basic data partition' != 'renamed'"),
    "gpt-partition-guid": (_gpt_guid, rf"partition 2 'uuid': '[0-9A-F-]+' != '{NEW_UUID}'"),
    "gap-last-sector": (_gap_end, r"gap after the table: first difference at byte"),
    "gap-first-sector": (_gap_start, r"gap after the table: first difference at byte 0:"),
    "boot-code": (_boot_code, r"boot code \(bytes 0..439\): first difference at byte 300"),
    "ntfs-backup-boot-sector": (_ntfs_backup, r"partition 3 NTFS backup boot sector"),
    "ext4-metadata": (_ext4_corrupt, r"fsck on target: partition 2 \(ext4\)"),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_oracle_catches(loops: Loops, tmp_path: Path, mutation: str) -> None:
    node, path = _build(loops, tmp_path, "gpt")
    copy = _raw_copy(loops, path, tmp_path / "copy.img")
    assert_equivalent(node, copy)
    change, expected = MUTATIONS[mutation]
    change(copy)
    with pytest.raises(AssertionError) as err:
        assert_equivalent(node, copy)
    assert re.search(expected, str(err.value), re.S), str(err.value)


def test_oracle_catches_mbr_differences(loops: Loops, tmp_path: Path) -> None:
    node, path = _build(loops, tmp_path, "mbr")
    copy = _raw_copy(loops, path, tmp_path / "copy.img")
    run("xfs_admin", "-L", "OTHER", partition_nodes(copy)[5])
    run("sfdisk", "--no-reread", "--no-tell-kernel", "--disk-id", copy, "0x01020304")
    with mounted(partition_nodes(copy)[6], "btrfs", readonly=False) as mp:
        (mp / "new-file").write_bytes(b"new")
    _flip(copy, 1024)  # gap after the MBR
    _flip(copy, 10)  # MBR boot code
    with pytest.raises(AssertionError) as err:
        assert_equivalent(node, copy)
    text = str(err.value)
    for expected in (
        r"table 'id': '0x[0-9a-f]+' != '0x01020304'",
        r"identity 5 'LABEL': 'XFSDATA' != 'OTHER'",
        r"partition 6 \(btrfs\) file 'new-file': only on target",
        r"gap after the table: first difference at byte 512",
        r"boot code \(bytes 0..439\): first difference at byte 10",
    ):
        assert re.search(expected, text), f"{expected!r} not in:\n{text}"


def test_oracle_catches_xfs_and_btrfs_corruption(loops: Loops, tmp_path: Path) -> None:
    node, path = _build(loops, tmp_path, "mbr")
    copy = _raw_copy(loops, path, tmp_path / "copy.img")
    parts = partition_nodes(copy)
    # xfs: zero a metadata block of allocation group 0
    assert blkid(parts[5])["TYPE"] == "xfs"
    write_raw(parts[5], 4096 * 2, bytes(4096))
    # btrfs: flip one byte of a file's data (caught by its data checksums)
    data = expected_payloads("mbr")[6].keep["data/random-1.bin"]
    raw = read_bytes(parts[6], 0, device_size(parts[6]))
    at = raw.find(data[:4096])
    assert at >= 0
    _flip(parts[6], at + 100)
    with pytest.raises(AssertionError) as err:
        fsck_all(copy)
    text = str(err.value)
    assert re.search(r"partition 5 \(xfs\)", text) and re.search(r"partition 6 \(btrfs\)", text)
    with pytest.raises(AssertionError, match=r"partition 6 \(btrfs\) files unreadable"):
        assert_equivalent(node, copy)


def test_loops_fixture_cleans_up(loops: Loops, tmp_path: Path) -> None:
    node, path = _build(loops, tmp_path, "4k")
    part = partition_nodes(node)[1]
    mp = loops.mountpoint("left-mounted")
    run("mount", "-o", "ro,noload", part, mp)
    loops.detach(node)
    assert not Path("/sys/block", Path(node).name, "loop", "backing_file").exists() or (
        Path("/sys/block", Path(node).name, "loop", "backing_file").read_text().strip()
        != str(path.resolve())
    )
    assert str(mp) not in Path("/proc/self/mounts").read_text()


def test_loops_cleanup_unmounts_and_detaches(tmp_path: Path) -> None:
    from kit.loops import Loops

    inner = Loops(tmp_path / "inner")
    outside = tmp_path / "outside"
    outside.mkdir()
    try:
        node = build_4k_disk(inner, tmp_path / "disk.img")
        parts = partition_nodes(node)
        run("mount", "-o", "ro,noload", parts[1], outside)  # mounted from our loop
        run("mount", "-o", "ro,norecovery,nouuid", parts[2], inner.mountpoint("below-root"))
    finally:
        inner.cleanup()
    mounts = Path("/proc/self/mounts").read_text()
    assert str(outside) not in mounts and str(inner.mount_root) not in mounts
    backing = Path("/sys/block", Path(node).name, "loop", "backing_file")
    assert not backing.exists() or backing.read_text().strip() != str(tmp_path / "disk.img")
    assert inner.nodes == []

"""btrfs saved, restored and cloned through our own used map, on real loop disks.

Each source is a GPT disk with one btrfs partition made by Debian 12's mkfs.btrfs (6.2:
skinny metadata, free-space tree, no-holes), holding two subvolumes, a read-only snapshot,
a couple of thousand small files (inline and not), zstd-compressed files (mount -o
compress=zstd), large files, a file changed and one deleted after the snapshot (the
snapshot keeps the old data) and a file written then deleted (free space holding stale
bytes). Variants: the defaults (DUP metadata), `-m single`, and mixed block groups
(`--mixed`). Each is saved, restored onto a disk of the same size and onto a larger one
(the filesystem grows), and cloned; `btrfs check --readonly --check-data-csum` must pass on
every target and the file trees (every subvolume and the snapshot, with hashes) and the
subvolume list (ids, uuids, read-only flags) must equal the source's.

Finding, kept out of the assertions (test_map_holds_every_block_dump_tree_reaches prints it
for each variant): partclone 0.3.23's `partclone.btrfs -D` map copies tens of MiB that no
tree reaches (about 38 MiB more than ours on the 300 MiB default variant: extents marked at
their logical address as if it were a device offset) and leaves out the second DUP copy of
a tree block (1 of about 1630 copies here). Whether a copy of only its ranges passes
`btrfs check` depends on the layout: on these filesystems it passes, but on a 300 MiB
`--mixed` filesystem with 3000 small files made during development it left out the level-2
root node of a subvolume tree and the copy failed with "checksum verify failed on N wanted
0x00000000", the symptom of issue 9.
"""

from __future__ import annotations

import random
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit.cli import appliance, file_digest, result_json
from kit.diskbuild import LINUX_FS_TYPE, MiB, sparse_file
from kit.diskcompare import (
    assert_equivalent,
    flush_all,
    mounted,
    partition_nodes,
    run,
    syncfs,
    umount,
)
from kit.fsinfo import fs_size
from kit.loops import Loops

from appliance.errors import ToolFailed
from appliance.fs.btrfsmap import btrfs_map
from appliance.fs.usedmap import used_map

pytestmark = pytest.mark.root

DISK_SIZE = 300 * MiB
LARGER = 450 * MiB
VARIANTS = {"defaults": [], "single": ["-m", "single"], "mixed": ["--mixed"]}


@dataclass
class Source:
    name: str
    node: str
    file: Path
    part: str
    repo: Path
    loops: Loops
    folder: Path


def _populate(loops: Loops, part: str, seed: int) -> None:
    rng = random.Random(seed)
    mp = loops.mountpoint("build")
    run("mount", "-t", "btrfs", "-o", "nodiscard,compress=zstd", part, mp)
    try:
        for sub in ("@home", "@data"):
            run("btrfs", "-q", "subvolume", "create", mp / sub)
        small = mp / "@home" / "small"
        small.mkdir()
        for index in range(2000):  # below 2 KiB inline in the fs tree, above it extents
            (small / f"f{index:04}").write_bytes(rng.randbytes(rng.randrange(1, 6000)))
        docs = mp / "@home" / "docs"
        docs.mkdir()
        for index in range(40):  # compressible: stored as zstd extents
            line = f"document {index} line of compressible text\n".encode()
            (docs / f"doc{index:02}.txt").write_bytes(line * rng.randrange(2000, 8000))
        data = mp / "@data"
        for index in range(2):
            (data / f"big{index}.bin").write_bytes(rng.randbytes(24 * MiB + index))
        (data / "changed.bin").write_bytes(rng.randbytes(4 * MiB))
        (data / "gone-after-snapshot.bin").write_bytes(rng.randbytes(6 * MiB))
        syncfs(mp)
        run("btrfs", "-q", "subvolume", "snapshot", "-r", data, mp / "@data-snap")
        (data / "gone-after-snapshot.bin").unlink()  # still held by the snapshot
        with open(data / "changed.bin", "r+b") as handle:
            handle.write(rng.randbytes(MiB))  # copy-on-write: the snapshot keeps the old
        (data / "stale.bin").write_bytes(rng.randbytes(12 * MiB))
        syncfs(mp)
        (data / "stale.bin").unlink()  # freed: its bytes stay in free space
        syncfs(mp)
    finally:
        umount(mp)


def build_btrfs_disk(loops: Loops, path: Path, mkfs: list[str], seed: int = 0) -> str:
    """A GPT disk with one btrfs partition from 1 MiB to the end; returns the loop node."""
    sparse_file(path.parent, path.name, DISK_SIZE)
    node = loops.attach(path)
    run(
        "sfdisk",
        "--no-reread",
        "--no-tell-kernel",
        "-q",
        node,
        input=f"label: gpt\nstart=2048, type={LINUX_FS_TYPE}, name=linux\n",
    )
    part = partition_nodes(node)[1]
    run("mkfs.btrfs", "-q", "-f", "-L", "BTRMAP", *mkfs, part)
    _populate(loops, part, seed)
    flush_all(node)
    return node


def subvolumes(part: str) -> list[str]:
    """`btrfs subvolume list` lines (without generations), each with its read-only flag."""
    with mounted(part, "btrfs", readonly=True) as mp:
        listing = run("btrfs", "subvolume", "list", "-a", "-u", "-q", "-R", mp).stdout
        out = []
        for line in listing.splitlines():  # ID, top level, parent/received uuid, uuid, path
            line = " ".join(re.sub(r"\bgen \d+ ", "", line).split())
            path = line.rpartition(" path ")[2].removeprefix("<FS_TREE>/")
            ro = run("btrfs", "property", "get", "-ts", mp / path, "ro").stdout.strip()
            out.append(f"{line} {ro}")
    return sorted(out)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def source(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Source]:
    name = request.param
    folder = tmp_path_factory.mktemp(f"btrfs-{name}")
    loops = Loops(folder)
    try:
        node = build_btrfs_disk(loops, folder / "source.img", VARIANTS[name])
        repo = folder / "repo"
        before = file_digest(folder / "source.img")
        stats = result_json(
            appliance("save", "--create", node, "--repo", str(repo), "--image", name, "--json")
        )
        assert file_digest(folder / "source.img") == before, "save wrote to its source"
        assert 0 < stats["used_bytes"] < DISK_SIZE // 2
        yield Source(
            name, node, folder / "source.img", partition_nodes(node)[1], repo, loops, folder
        )
    finally:
        loops.cleanup()


def _target(src: Source, name: str, size: int) -> str:
    return src.loops.attach(sparse_file(src.folder, name, size))


def _assert_same_btrfs(src: Source, target: str, size: int) -> None:
    """btrfs check, file trees (all subvolumes and the snapshot), subvolume list."""
    if size == DISK_SIZE:
        assert_equivalent(src.node, target, same_size=True)
    else:
        assert_equivalent(src.node, target, same_size=False, resized={1})
        grown = fs_size(partition_nodes(target)[1], "btrfs")
        assert grown > fs_size(src.part, "btrfs") and grown > 0.97 * (size - 2 * MiB)
    assert subvolumes(partition_nodes(target)[1]) == subvolumes(src.part)


@pytest.mark.parametrize("size", [DISK_SIZE, LARGER], ids=["same-size", "larger"])
def test_restore(source: Source, size: int) -> None:
    target = _target(source, f"restore-{size}.img", size)
    appliance("restore", "--repo", str(source.repo), "--image", source.name, target, "--yes")
    _assert_same_btrfs(source, target, size)
    source.loops.detach(target)


def test_clone(source: Source) -> None:
    target = _target(source, "clone.img", DISK_SIZE)
    before = file_digest(source.file)
    appliance("clone", source.node, target, "--yes")
    assert file_digest(source.file) == before, "clone wrote to its source"
    _assert_same_btrfs(source, target, DISK_SIZE)
    source.loops.detach(target)


def _reachable(part: str) -> tuple[list[int], list[tuple[int, int]], int]:
    """Every tree block and data extent a full dump-tree reaches (logical), and nodesize."""
    text = run("btrfs", "inspect-internal", "dump-tree", "--hide-names", part).stdout
    trees: set[int] = set()
    data: set[tuple[int, int]] = set()
    for line in text.splitlines():
        words = line.split()
        if words[:1] in (["leaf"], ["node"]) and words[2] != "flags":
            trees.add(int(words[1]))
        elif line.strip().startswith("extent data disk byte") and words[4] != "0":
            data.add((int(words[4]), int(words[6])))
    super_text = run("btrfs", "inspect-internal", "dump-super", part).stdout
    nodesize = int(
        next(line.split()[1] for line in super_text.splitlines() if line.startswith("nodesize"))
    )
    return sorted(trees), sorted(data), nodesize


def _stripes(part: str) -> list[tuple[int, int, list[int]]]:
    """(logical, length, device offsets) of every chunk, read from dump-tree's chunk tree
    here rather than by appliance.fs.btrfsmap (btrfs-map-logical fails on tree blocks in
    mixed block groups)."""
    chunks: list[tuple[int, int, list[int]]] = []
    text = run("btrfs", "inspect-internal", "dump-tree", "-t", "chunk", part).stdout
    for line in text.splitlines():
        words = line.split()
        if "CHUNK_ITEM" in words:
            chunks.append((int(words[5].rstrip(")")), 0, []))
        elif words[:1] == ["length"] and chunks and chunks[-1][1] == 0:
            chunks[-1] = (chunks[-1][0], int(words[1]), [])
        elif words[:1] == ["stripe"] and chunks:
            chunks[-1][2].append(int(words[5]))
    return chunks


def _physical(chunks: list[tuple[int, int, list[int]]], logical: int) -> list[int]:
    [(start, offsets)] = [(s, o) for s, n, o in chunks if s <= logical < s + n]
    return [offset + logical - start for offset in offsets]


def test_map_holds_every_block_dump_tree_reaches(source: Source) -> None:
    """The oracle: every copy (every stripe of its chunk) of every tree block and data extent that
    a full dump-tree reaches lies in the map; free space (the deleted file) does not.
    How many of them partclone's map misses is printed, not asserted."""
    size = int(run("blockdev", "--getsize64", source.part).stdout)
    umap = btrfs_map(source.part, size)
    assert umap.exact, umap.reason
    trees, data, nodesize = _reachable(source.part)
    chunks = _stripes(source.part)
    wanted = [(offset, nodesize) for tree in trees for offset in _physical(chunks, tree)]
    wanted += [(offset, length) for start, length in data for offset in _physical(chunks, start)]

    def missing(ranges: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
        return [
            (o, n) for o, n in wanted if not any(s <= o and o + n <= s + ln for s, ln in ranges)
        ]

    assert not missing(umap.ranges)
    assert sum(n for _, n in umap.ranges) < 100 * MiB  # 12 MiB stale + free space left out
    ours = used_map(source.part, "btrfs", size, 512)
    assert ours.method == "partclone" and sum(n for _, n in ours.ranges) >= sum(
        n for _, n in umap.ranges
    )
    partclone = subprocess.run(
        [
            "partclone.btrfs",
            "-D",
            "-q",
            "-f",
            "0",
            "-s",
            source.part,
            "-o",
            str(source.folder / "partclone.map"),
            "-L",
            str(source.folder / "partclone.log"),
        ],
        capture_output=True,
        check=False,
    )
    if partclone.returncode == 0:
        pc_ranges = tuple(
            (int(w[0], 0), int(w[1], 0))
            for w in (
                line.split()
                for line in (source.folder / "partclone.map").read_text().splitlines()
                if line[:1] not in ("#", "")
            )
            if len(w) == 3 and w[2] == "+"
        )
        copy = source.folder / "partclone-copy.img"
        with open(source.part, "rb") as src, open(copy, "wb") as dst:
            dst.truncate(size)
            for offset, length in pc_ranges:
                src.seek(offset)
                dst.seek(offset)
                dst.write(src.read(length))
        check = run("btrfs", "check", "--readonly", copy, check=False)
        first_error = next(
            (line for line in check.stderr.splitlines() if "verify" in line or "ERROR" in line), ""
        )
        copy.unlink()
        print(
            f"{source.name}: partclone's map misses {len(missing(pc_ranges))} of "
            f"{len(wanted)} copies {missing(pc_ranges)[:3]}; ours "
            f"{sum(n for _, n in umap.ranges) >> 20} MiB, "
            f"partclone's {sum(n for _, n in pc_ranges) >> 20} MiB; btrfs check on a "
            f"copy of its ranges only: exit {check.returncode} {first_error}"
        )


def test_block_group_tree_variant(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            "mkfs.btrfs",
            "-q",
            "-f",
            "-O",
            "block-group-tree",
            str(sparse_file(tmp_path, "bgt.img", DISK_SIZE)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(
            "this mkfs.btrfs cannot make a block-group-tree filesystem "
            f"({proc.stderr.strip().splitlines()[-1]}); the unit test "
            "test_block_group_tree_needs_no_block_group_items covers the format"
        )
    umap = btrfs_map(str(tmp_path / "bgt.img"), DISK_SIZE)
    assert umap.exact, umap.reason


def test_unreadable_btrfs_is_tool_failed(tmp_path: Path) -> None:
    """A btrfs whose superblock is damaged: ToolFailed (the save copies it whole)."""
    image = sparse_file(tmp_path, "broken.img", DISK_SIZE)
    run("mkfs.btrfs", "-q", "-f", image)
    with open(image, "r+b") as handle:
        handle.seek(64 * 1024 + 0x40)  # the magic of the primary superblock
        handle.write(b"NOTBTRFS")
    with pytest.raises(ToolFailed, match="btrfs could not read the filesystem"):
        btrfs_map(str(image), DISK_SIZE)

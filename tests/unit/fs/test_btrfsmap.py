"""The btrfs used map on btrfs-progs 6.2 output captured from real filesystems.

tests/unit/fs/data/btrfs/capture.sh made the data: NAME.super/.chunk/.extent/.dev are what
btrfsmap runs, NAME.refs is the oracle: every tree block and data extent that a full
`dump-tree` of the same filesystem reaches (logical addresses). A map is right when every
copy of every one of them lies inside it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.fs import btrfsmap
from appliance.fs.btrfsmap import (
    BtrfsMap,
    Chunk,
    build_map,
    fixed_ranges,
    map_extents,
    parse_chunks,
    parse_dev_extents,
    parse_extents,
    parse_super,
)

DATA = Path(__file__).parent / "data" / "btrfs"
MiB = 1 << 20
SIZE = 300 * MiB  # every captured filesystem was made on a 300 MiB image


def text(name: str, part: str) -> str:
    return (DATA / f"{name}.{part}").read_text()


def mapped(name: str, size: int = SIZE, **replace: str) -> BtrfsMap:
    parts = {
        part: replace.get(part, text(name, part.replace("_", ".")))
        for part in ("super", "chunk", "extent", "extent_err", "dev")
    }
    return build_map(
        size, parts["super"], parts["chunk"], parts["extent"], parts["extent_err"], parts["dev"]
    )


def refs(name: str) -> tuple[list[int], list[tuple[int, int]]]:
    """(tree block addresses, data extents) a full dump-tree reaches."""
    trees: list[int] = []
    data: list[tuple[int, int]] = []
    for line in text(name, "refs").splitlines():
        words = line.split()
        if words[0] == "tree":
            trees.append(int(words[1]))
        else:
            data.append((int(words[1]), int(words[2])))
    return trees, data


def covered(ranges: tuple[tuple[int, int], ...], offset: int, length: int) -> bool:
    return any(start <= offset and offset + length <= start + size for start, size in ranges)


def assert_covers_refs(name: str, umap: BtrfsMap) -> None:
    sb = parse_super(text(name, "super"))
    chunks = parse_chunks(text(name, "chunk"))
    trees, data = refs(name)
    assert len(trees) > 10
    wanted = []  # every stripe's copy, computed here rather than by map_extents
    for start, length in [(t, sb.nodesize) for t in trees] + data:
        chunk = next(c for c in chunks if c.logical <= start < c.logical + c.length)
        wanted += [(offset + start - chunk.logical, length) for _, offset in chunk.stripes]
    missing = [(o, n) for o, n in wanted if not covered(umap.ranges, o, n)]
    assert not missing, f"{len(missing)} of {len(wanted)} copies missing, e.g. {missing[:3]}"


# -- parsing --------------------------------------------------------------------------------


def test_super_fields_of_a_debian_12_default_filesystem() -> None:
    sb = parse_super(text("dup", "super"))
    assert (sb.nodesize, sb.num_devices, sb.devid, sb.log_root) == (16384, 1, 1, 0)
    assert {"SKINNY_METADATA", "NO_HOLES", "MIXED_BACKREF", "COMPRESS_ZSTD"} <= sb.incompat
    assert sb.total_bytes == SIZE
    assert 0 < sb.bytes_used < sb.dev_bytes_used <= SIZE


def test_super_with_a_bad_checksum_is_refused() -> None:
    bad = text("dup", "super").replace("[match]", "[DON'T MATCH]", 1)
    with pytest.raises(ValueError, match="does not match"):
        parse_super(bad)


def test_chunks_dup_metadata_has_two_stripes() -> None:
    chunks = parse_chunks(text("dup", "chunk"))
    by_type = {frozenset(c.types): c.profile for c in chunks}
    assert by_type == {
        frozenset({"DATA"}): "single",
        frozenset({"SYSTEM"}): "DUP",
        frozenset({"METADATA"}): "DUP",
    }
    for chunk in chunks:
        assert len(chunk.stripes) == (2 if chunk.profile == "DUP" else 1)
        assert all(devid == 1 for devid, _ in chunk.stripes)
    dup = next(c for c in chunks if "METADATA" in c.types)
    assert dup.stripes[0][1] != dup.stripes[1][1]


def test_mixed_block_groups_are_data_and_metadata() -> None:
    chunks = parse_chunks(text("mixed", "chunk"))
    assert any(c.types == {"DATA", "METADATA"} for c in chunks)


def test_chunk_with_a_missing_stripe_is_refused() -> None:
    chunk = text("dup", "chunk")
    cut = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("stripe 1 "))
    with pytest.raises(ValueError, match="lists 1 of 2 stripes"):
        parse_chunks(cut)


@pytest.mark.parametrize("name", ["dup", "single", "mixed"])
def test_extents_add_up_to_bytes_used(name: str) -> None:
    sb = parse_super(text(name, "super"))
    extents = parse_extents(text(name, "extent"), sb.nodesize)
    assert sum(length for _, length in extents) == sb.bytes_used


def test_unknown_extent_tree_item_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown item"):
        parse_extents("\titem 0 key (13631488 NEW_FANCY_ITEM 4096) itemoff 1 itemsize 2\n", 16384)


def test_dev_extents_of_one_device() -> None:
    sb = parse_super(text("twodev", "super"))
    extents = parse_dev_extents(text("twodev", "dev"), sb.devid)
    assert sum(length for _, length in extents) == sb.dev_bytes_used
    assert parse_dev_extents(text("twodev", "dev"), 7) == []


# -- the map ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dup", "single", "mixed"])
def test_exact_map_holds_every_reachable_block_and_extent(name: str) -> None:
    umap = mapped(name)
    assert umap.exact, umap.reason
    assert_covers_refs(name, umap)
    allocated = sum(n for _, n in parse_dev_extents(text(name, "dev"), 1))
    assert sum(n for _, n in umap.ranges) < allocated // 2  # free space is left out


def test_dup_metadata_keeps_both_copies_of_the_chunk_root() -> None:
    sb = parse_super(text("dup", "super"))
    chunk_root = int(
        next(
            line.split()[1]
            for line in text("dup", "super").splitlines()
            if line.startswith("chunk_root\t")
        )
    )
    system = next(c for c in parse_chunks(text("dup", "chunk")) if "SYSTEM" in c.types)
    umap = mapped("dup")
    for _, physical in system.stripes:
        assert covered(umap.ranges, physical + chunk_root - system.logical, sb.nodesize)


def test_boot_area_and_superblock_copies_are_kept() -> None:
    umap = mapped("dup")
    assert covered(umap.ranges, 0, MiB)
    assert covered(umap.ranges, 64 * MiB, 4096)
    assert fixed_ranges(300 * MiB) == [(0, MiB), (64 << 10, 4096), (64 * MiB, 4096)]
    assert (256 << 30, 4096) in fixed_ranges(300 << 30)
    assert fixed_ranges(512 << 10) == [(0, 512 << 10), (64 << 10, 4096)]


def test_block_group_tree_needs_no_block_group_items() -> None:
    """With -O block-group-tree the BLOCK_GROUP_ITEMs move out of the extent tree into
    their own tree (whose blocks are METADATA_ITEMs like any tree's). btrfs-progs 6.2 in
    Debian 12 cannot make such a filesystem ("unrecognized filesystem feature"), so this
    is the captured default filesystem with exactly that change: the map must not move."""
    extent = text("dup", "extent")
    without = "\n".join(
        line
        for line in extent.splitlines()
        if "BLOCK_GROUP_ITEM" not in line and "block group used" not in line
    )
    assert without != extent
    super_text = text("dup", "super").replace(
        "FREE_SPACE_TREE_VALID )", "FREE_SPACE_TREE_VALID |\n\t\t\t  BLOCK_GROUP_TREE )"
    )
    umap = mapped("dup", extent=without, super=super_text)
    assert umap.exact
    assert umap.ranges == mapped("dup").ranges


# -- falling back to the whole chunks ---------------------------------------------------------


def whole_chunks(name: str, size: int = SIZE) -> tuple[tuple[int, int], ...]:
    dev = parse_dev_extents(text(name, "dev"), parse_super(text(name, "super")).devid)
    return btrfsmap.merge(dev + fixed_ranges(size))


def test_striped_profile_falls_back_to_whole_chunks() -> None:
    umap = mapped("raid0")
    assert not umap.exact
    assert "RAID0" in umap.reason
    assert umap.ranges == whole_chunks("raid0")


def test_second_device_falls_back_to_this_devices_chunks() -> None:
    umap = mapped("twodev")
    assert not umap.exact
    assert "2 devices" in umap.reason
    assert umap.ranges == whole_chunks("twodev")


def test_log_tree_not_replayed_falls_back_and_keeps_the_logged_data() -> None:
    """An fsync before a crash: the log tree's blocks and the data it logged are in no
    extent item, so the extent tree alone would drop them."""
    sb = parse_super(text("log", "super"))
    in_extent_tree = {start for start, _ in parse_extents(text("log", "extent"), sb.nodesize)}
    trees, data = refs("log")
    assert sb.log_root in trees and sb.log_root not in in_extent_tree
    assert any(start not in in_extent_tree for start, _ in data)
    umap = mapped("log")
    assert not umap.exact and "log tree" in umap.reason
    assert_covers_refs("log", umap)


@pytest.mark.parametrize(
    "change, words",
    [
        ("errors", "dump-tree reported"),
        ("drop-item", "add up to"),
        ("feature", "EXTENT_TREE_V2"),
        ("outside", "in no chunk"),
    ],
)
def test_any_doubt_falls_back_to_whole_chunks(change: str, words: str) -> None:
    replace: dict[str, str] = {}
    extent = text("dup", "extent")
    if change == "errors":
        replace["extent_err"] = "checksum verify failed on 30490624 wanted 0x0 found 0x1\n"
    elif change == "drop-item":
        lines = extent.splitlines()
        index = next(
            i for i, line in enumerate(lines) if "EXTENT_ITEM" in line and line.startswith("\titem")
        )
        replace["extent"] = "\n".join(lines[:index] + lines[index + 3 :])
    elif change == "feature":
        replace["super"] = text("dup", "super").replace(
            "NO_HOLES )", "NO_HOLES |\n\t\t\t  EXTENT_TREE_V2 )"
        )
    else:  # one extent moved past every chunk: the sum still matches
        first = re.search(r"item \d+ key \((\d+) EXTENT_ITEM 4096\)", extent)
        assert first is not None
        moved = first.group(0).replace(first.group(1), "999999999999")
        replace["extent"] = extent[: first.start()] + moved + extent[first.end() :]
    umap = mapped("dup", **replace)
    assert not umap.exact
    assert words in umap.reason
    assert umap.ranges == whole_chunks("dup")


def test_device_extents_that_do_not_add_up_are_refused() -> None:
    dev = text("raid0", "dev").replace("length 8388608", "length 4096", 1)
    with pytest.raises(ValueError, match="device extents add up"):
        mapped("raid0", dev=dev)


def test_filesystem_larger_than_its_device_is_refused() -> None:
    with pytest.raises(ValueError, match="past the end"):
        mapped("dup", size=100 * MiB)


def test_map_extents_uses_every_mirror_stripe() -> None:
    chunk = Chunk(1000, 100, frozenset({"METADATA"}), "DUP", ((1, 5000), (1, 9000)))
    assert map_extents([(1010, 16)], [chunk]) == [(5010, 16), (9010, 16)]
    with pytest.raises(ValueError, match="in no chunk"):
        map_extents([(1090, 16)], [chunk])

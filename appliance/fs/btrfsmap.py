"""Which byte ranges of a btrfs filesystem hold data, read from the filesystem's own trees.

partclone 0.3.23's btrfs map (`partclone.btrfs -D`) misses tree blocks (a level-1 node that
roots a subvolume tree, for one), so a copy made from it fails `btrfs check`. This module
asks btrfs-progs instead:

1. `btrfs inspect-internal dump-super`: node size, device id, number of devices, feature
   flags, the log tree's root and the bytes the filesystem says it uses.
2. `dump-tree -t chunk`: every chunk (logical start, length, profile) and its stripes (each a
   device id and a physical offset). DUP and RAID1* keep a full copy in every stripe.
3. `dump-tree -t extent`: every allocated extent: EXTENT_ITEM (data, or a tree block without
   skinny metadata) with its length, METADATA_ITEM (a tree block) of one node size. The
   free-space tree, the block-group tree, the data reloc tree and relocation trees are trees
   like the others, so their blocks are extents too.
4. Each extent is mapped to every stripe of its chunk; the first MiB (boot loaders may live
   there) and the superblock copies (64 KiB, 64 MiB, 256 GiB) are added.

The refined map is used only when it is provably whole: the extents add up to the
superblock's bytes_used exactly, one device, only mirror profiles (single, DUP, RAID1*), no
log tree waiting for replay (its blocks and the data it logged are not in the extent tree),
no feature flag this module does not know, and dump-tree reported nothing on stderr.
Otherwise every allocated chunk stripe of this device is copied (its device extents, which
must add up to the device's bytes_used); if even that cannot be read, ToolFailed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from appliance.errors import ToolFailed
from appliance.tools import run

log = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

SUPER_SIZE = 4 * KiB
SUPER_MIRRORS = (64 * KiB, 64 * MiB, 256 * GiB)
BOOT_AREA = MiB  # btrfs leaves the first MiB unused; boot loaders may not
DUMP_TIMEOUT = 1800.0

# profiles whose every stripe holds a whole copy of the chunk
MIRROR_PROFILES = frozenset({"single", "DUP", "RAID1", "RAID1C3", "RAID1C4"})
PROFILES = MIRROR_PROFILES | {"RAID0", "RAID10", "RAID5", "RAID6"}
BLOCK_GROUP_TYPES = frozenset({"DATA", "METADATA", "SYSTEM"})
# incompat flags that do not change where extents live or how the extent tree records them
KNOWN_INCOMPAT = frozenset(
    {
        "MIXED_BACKREF",
        "DEFAULT_SUBVOL",
        "MIXED_GROUPS",
        "COMPRESS_LZO",
        "COMPRESS_ZSTD",
        "BIG_METADATA",
        "EXTENDED_IREF",
        "RAID56",
        "SKINNY_METADATA",
        "NO_HOLES",
        "METADATA_UUID",
        "RAID1C34",
    }
)
# extent tree items that reference an extent rather than allocate one
REF_ITEMS = frozenset(
    {
        "BLOCK_GROUP_ITEM",
        "TREE_BLOCK_REF",
        "SHARED_BLOCK_REF",
        "EXTENT_DATA_REF",
        "SHARED_DATA_REF",
        "EXTENT_OWNER_REF",
    }
)

_ITEM = re.compile(r"item \d+ key \((\S+) (\S+) (\S+)\)")
_FLAGS = re.compile(r"\(([^)]*)\)")


@dataclass(frozen=True)
class Super:
    nodesize: int
    total_bytes: int  # the filesystem's logical size (all devices)
    bytes_used: int  # bytes in allocated extents (one copy of each)
    num_devices: int
    devid: int  # this device's id
    dev_bytes_used: int  # bytes of this device in chunks (every stripe)
    log_root: int
    incompat: frozenset[str]


@dataclass(frozen=True)
class Chunk:
    logical: int
    length: int
    types: frozenset[str]  # DATA, METADATA, SYSTEM
    profile: str  # single, DUP, RAID1, ...
    stripes: tuple[tuple[int, int], ...]  # (devid, physical offset)


@dataclass(frozen=True)
class BtrfsMap:
    ranges: tuple[tuple[int, int], ...]  # (offset, length), sorted, merged
    exact: bool  # from the extent tree (True) or whole chunks (False)
    reason: str  # why the whole chunks were taken ("" when exact)


# -- parsing (pure functions on the tools' text) --------------------------------------------


def parse_super(text: str) -> Super:
    """The fields of `btrfs inspect-internal dump-super` this module uses.

    ValueError when a field is missing or unreadable, or a checksum does not match.
    """
    fields: dict[str, str] = {}
    flags: dict[str, set[str]] = {}
    collecting: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if collecting is not None and line[:1] in (" ", "\t"):
            flags[collecting].update(_flag_names(stripped))
            if ")" in stripped:
                collecting = None
            continue
        collecting = None
        parts = stripped.split(None, 1)
        if len(parts) != 2:
            continue
        name, value = parts
        fields.setdefault(name, value)
        if name in ("incompat_flags", "compat_ro_flags", "compat_flags"):
            flags[name] = set(_flag_names(value.partition(" ")[2]))
            if ")" not in value:
                collecting = name  # the names follow on indented lines: "( A |", "  B )"
        if name in ("csum", "magic") and "[match]" not in value:
            raise ValueError(f"the superblock's {name} does not match: {value}")

    def number(name: str) -> int:
        try:
            return int(fields[name].split()[0], 0)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"dump-super shows no readable {name}") from exc

    return Super(
        number("nodesize"),
        number("total_bytes"),
        number("bytes_used"),
        number("num_devices"),
        number("dev_item.devid"),
        number("dev_item.bytes_used"),
        number("log_root"),
        frozenset(flags.get("incompat_flags", set())),
    )


def _flag_names(text: str) -> list[str]:
    """Flag names in '( A |', '  B |' or '  C )' continuation text."""
    body = text.replace("(", " ").replace(")", " ")
    return [name.strip() for name in body.split("|") if name.strip()]


@dataclass
class _Draft:
    logical: int
    length: int | None = None
    types: frozenset[str] = frozenset()
    profile: str = ""
    num_stripes: int | None = None
    stripes: list[tuple[int, int]] | None = None

    def chunk(self) -> Chunk:
        stripes = tuple(self.stripes or ())
        if self.length is None or not self.types or self.num_stripes is None:
            raise ValueError(f"the chunk item at {self.logical} is incomplete")
        if self.num_stripes != len(stripes) or not stripes:
            raise ValueError(
                f"the chunk at {self.logical} lists {len(stripes)} of {self.num_stripes} stripes"
            )
        return Chunk(self.logical, self.length, self.types, self.profile, stripes)


def parse_chunks(text: str) -> list[Chunk]:
    """The CHUNK_ITEMs of `dump-tree -t chunk` (or of dump-super -f's sys_chunk_array).

    ValueError when an item is incomplete or its stripe count is not num_stripes.
    """
    chunks: list[Chunk] = []
    draft: _Draft | None = None
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        found = _ITEM.search(line)
        if found or words[0] in ("leaf", "node"):
            if draft is not None:
                chunks.append(draft.chunk())
            draft = None
            if found and found.group(2) == "CHUNK_ITEM":
                draft = _Draft(int(found.group(3)), stripes=[])
            continue
        if draft is None:
            continue
        if words[0] == "length" and "type" in words:
            draft.length = int(words[1])
            kind = words[words.index("type") + 1]
            names = kind.split("|")
            profiles = [name for name in names if name not in BLOCK_GROUP_TYPES]
            draft.types = frozenset(names) & BLOCK_GROUP_TYPES
            if not draft.types or len(profiles) != 1:
                raise ValueError(f"the chunk at {draft.logical} has the type {kind}")
            draft.profile = profiles[0]
        elif words[0] == "num_stripes":
            draft.num_stripes = int(words[1])
        elif words[0] == "stripe" and len(words) >= 6 and words[2] == "devid":
            assert draft.stripes is not None
            draft.stripes.append((int(words[3]), int(words[5])))
    if draft is not None:
        chunks.append(draft.chunk())
    return chunks


def parse_extents(text: str, nodesize: int) -> list[tuple[int, int]]:
    """(logical start, length) of every extent item of `dump-tree -t extent`.

    ValueError on an item this module does not know (a newer format), so the caller falls
    back to the whole chunks rather than miss an extent.
    """
    extents: list[tuple[int, int]] = []
    for line in text.splitlines():
        if not line.startswith("\titem "):
            continue
        found = _ITEM.match(line, 1)
        if found is None:
            raise ValueError(f"unreadable extent tree line: {line.strip()!r}")
        objectid, kind, offset = found.groups()
        if kind in REF_ITEMS:
            continue
        try:
            start, value = int(objectid), int(offset)
        except ValueError as exc:
            raise ValueError(f"unreadable extent tree key: {line.strip()!r}") from exc
        if kind == "EXTENT_ITEM":
            extents.append((start, value))
        elif kind == "METADATA_ITEM":
            extents.append((start, nodesize))
        else:
            raise ValueError(f"unknown item in the extent tree: {line.strip()!r}")
    return extents


def parse_dev_extents(text: str, devid: int) -> list[tuple[int, int]]:
    """(physical offset, length) of the DEV_EXTENTs of device `devid` in `dump-tree -t dev`."""
    extents: list[tuple[int, int]] = []
    pending: int | None = None
    for line in text.splitlines():
        found = _ITEM.search(line)
        if found:
            if pending is not None:
                raise ValueError(f"device extent at {pending} has no length")
            pending = None
            if found.group(2) == "DEV_EXTENT" and found.group(1) == str(devid):
                pending = int(found.group(3))
            continue
        words = line.split()
        if pending is not None and "length" in words:
            extents.append((pending, int(words[words.index("length") + 1])))
            pending = None
    if pending is not None:
        raise ValueError(f"device extent at {pending} has no length")
    return extents


# -- deciding ------------------------------------------------------------------------------


def fixed_ranges(size: int) -> list[tuple[int, int]]:
    """The first MiB and every superblock copy that fits in `size` bytes."""
    ranges = [(0, min(BOOT_AREA, size))]
    ranges += [(offset, SUPER_SIZE) for offset in SUPER_MIRRORS if offset + SUPER_SIZE <= size]
    return ranges


def unsure_reason(sb: Super, chunks: list[Chunk]) -> str:
    """Why the extent tree alone cannot be trusted to map this filesystem ("" if it can)."""
    if sb.num_devices != 1:
        return f"it spans {sb.num_devices} devices"
    unknown = sorted(sb.incompat - KNOWN_INCOMPAT)
    if unknown:
        return f"it uses the feature {', '.join(unknown)}"
    if sb.log_root:
        return "its log tree was not replayed (it was not unmounted cleanly)"
    for chunk in chunks:
        if chunk.profile not in MIRROR_PROFILES:
            return f"the chunk at {chunk.logical} has the profile {chunk.profile}"
        if any(devid != sb.devid for devid, _ in chunk.stripes):
            return f"the chunk at {chunk.logical} has a stripe on another device"
    return ""


def map_extents(extents: list[tuple[int, int]], chunks: list[Chunk]) -> list[tuple[int, int]]:
    """Physical (offset, length) of every copy of every extent (mirror profiles only).

    ValueError when an extent lies outside every chunk.
    """
    ordered = sorted(chunks, key=lambda c: c.logical)
    starts = [chunk.logical for chunk in ordered]
    physical: list[tuple[int, int]] = []
    index = 0
    for start, length in sorted(extents):
        while index < len(ordered) and ordered[index].logical + ordered[index].length <= start:
            index += 1
        if (
            index == len(ordered)
            or start < starts[index]
            or start + length > starts[index] + ordered[index].length
        ):
            raise ValueError(f"the extent at {start} ({length} bytes) is in no chunk")
        chunk = ordered[index]
        physical += [(offset + start - chunk.logical, length) for _, offset in chunk.stripes]
    return physical


class _NeedDevTree(ValueError):
    """The extent tree cannot be trusted; the device tree must be read."""


def build_map(
    size: int,
    super_text: str,
    chunk_text: str,
    extent_text: str,
    extent_errors: str,
    dev_text: str | None,
) -> BtrfsMap:
    """The used ranges from the tools' output; `dev_text` (dump-tree -t dev) is only read
    when the extent tree cannot be trusted. ValueError when nothing sound can be built."""
    sb = parse_super(super_text)
    reason = ""
    ranges: list[tuple[int, int]] = []
    try:
        chunks = parse_chunks(chunk_text)
        reason = unsure_reason(sb, chunks)
        if not reason and extent_errors.strip():
            reason = f"dump-tree reported: {extent_errors.strip().splitlines()[-1]}"
        if not reason:
            extents = parse_extents(extent_text, sb.nodesize)
            total = sum(length for _, length in extents)
            if total != sb.bytes_used:
                reason = (
                    f"its extents add up to {total} bytes, not the {sb.bytes_used} "
                    f"its superblock says"
                )
            else:
                ranges = map_extents(extents, chunks)
    except ValueError as exc:
        reason = str(exc)
    if reason:
        if dev_text is None:
            raise _NeedDevTree(reason)
        ranges = parse_dev_extents(dev_text, sb.devid)
        total = sum(length for _, length in ranges)
        if total != sb.dev_bytes_used:
            raise ValueError(
                f"its device extents add up to {total} bytes, not the "
                f"{sb.dev_bytes_used} its superblock says"
            )
    ranges += fixed_ranges(size)
    end = max(offset + length for offset, length in ranges)
    if end > size:
        raise ValueError(f"it uses bytes up to {end}, past the end of its {size}-byte device")
    return BtrfsMap(merge(ranges), not reason, reason)


def merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted, with overlapping and touching ranges joined."""
    merged: list[list[int]] = []
    for offset, length in sorted(ranges):
        if length <= 0:
            continue
        if merged and offset <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], offset + length)
        else:
            merged.append([offset, offset + length])
    return tuple((start, end - start) for start, end in merged)


# -- running the tools ---------------------------------------------------------------------


def _dump(node: str, *args: str) -> tuple[str, str]:
    proc = run(["btrfs", "inspect-internal", *args, node], check=False, timeout=DUMP_TIMEOUT)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ToolFailed(
            f"btrfs could not read the filesystem on {node}: "
            f"{detail[-1] if detail else f'exit code {proc.returncode}'}"
        )
    return proc.stdout, proc.stderr


def btrfs_map(node: str, size: int) -> BtrfsMap:
    """The used ranges of the btrfs filesystem at `node` (a device or image of `size` bytes).

    ToolFailed when btrfs-progs cannot read it or no sound map can be built (the caller then
    copies the partition whole).
    """
    super_text, _ = _dump(node, "dump-super")
    chunk_text, _ = _dump(node, "dump-tree", "--noscan", "-t", "chunk")
    extent_text, extent_errors = _dump(node, "dump-tree", "--noscan", "-t", "extent")
    try:
        try:
            result = build_map(size, super_text, chunk_text, extent_text, extent_errors, None)
        except _NeedDevTree:
            dev_text, _ = _dump(node, "dump-tree", "--noscan", "-t", "dev")
            result = build_map(size, super_text, chunk_text, extent_text, extent_errors, dev_text)
    except ValueError as exc:
        raise ToolFailed(f"The btrfs filesystem on {node} cannot be mapped: {exc}.") from exc
    if not result.exact:
        log.warning("btrfs on %s: copying every allocated chunk, because %s", node, result.reason)
    return result


def btrfs_used_ranges(node: str, size: int) -> list[tuple[int, int]]:
    """(offset, length) byte ranges of `node` that a copy of its btrfs filesystem needs."""
    return list(btrfs_map(node, size).ranges)

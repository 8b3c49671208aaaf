"""What a filesystem says about its own bytes: how many it uses, and which files hold a
given byte range (to tell a user what unreadable sectors hit).

Asked of the filesystem's own tools, read-only, tolerant of damage: ext2/3/4 through
`dumpe2fs -h` and `debugfs -c` (catastrophic mode: it opens a filesystem whose bitmaps
cannot be read), NTFS through `ntfscluster -f` (it also reads a volume Windows left dirty).
Any other filesystem, or a tool that fails, gives None or [] and the caller says less.
"""

from __future__ import annotations

import re

from appliance.errors import ApplianceError
from appliance.fs.kinds import family_of
from appliance.tools import run

METADATA = "filesystem metadata"
MAX_BLOCKS = 65536  # filesystem blocks looked up per partition
MAX_NTFS_RANGES = 64  # ntfscluster reads the whole MFT once per range
FIRST_EXT_INODE = 11  # inodes below are the filesystem's own (journal, resize, ...)
FIRST_NTFS_INODE = 24  # MFT records below are NTFS's own ($MFT, $LogFile, $Bitmap, ...)
_NTFS_HIT = re.compile(r"^Inode (\d+) (/.*)$")


def used_bytes(node: str, fstype: str | None) -> int | None:
    """The bytes the filesystem says it uses; None when it cannot say."""
    if not node:
        return None
    family = family_of(fstype)
    if family == "ext":
        info = ext_header(node)
        if info is None:
            return None
        return (info["Block count"] - info["Free blocks"]) * info["Block size"]
    if family == "ntfs":
        stats = _ntfs_info(node)
        if "bytes per volume" in stats and "bytes of free space" in stats:
            return stats["bytes per volume"] - stats["bytes of free space"]
    return None


def files_at(node: str, fstype: str | None, ranges: list[tuple[int, int]]) -> list[str]:
    """The files that hold the partition-relative byte ranges, and METADATA when some of
    them hold the filesystem's own structures (or no file at all); [] when it cannot say."""
    if not node:
        return []
    family = family_of(fstype)
    if family == "ext":
        return _ext_files(node, ranges)
    if family == "ntfs":
        return _ntfs_files(node, ranges)
    return []


def _tool(args: list[str]) -> str:
    """A read-only query's output; "" when the tool is missing or fails."""
    try:
        proc = run(args, check=False, timeout=300)
    except ApplianceError:
        return ""
    return proc.stdout if proc.returncode == 0 else ""


def ext_header(node: str) -> dict[str, int] | None:
    """Block count, free blocks and block size from the superblock."""
    out: dict[str, int] = {}
    for line in _tool(["dumpe2fs", "-h", node]).splitlines():
        key, _, value = line.partition(":")
        if key in ("Block count", "Free blocks", "Block size") and value.strip().isdigit():
            out[key] = int(value.strip())
    return out if len(out) == 3 else None


def _ext_files(node: str, ranges: list[tuple[int, int]]) -> list[str]:
    info = ext_header(node)
    if info is None:
        return []
    size = info["Block size"]
    blocks: set[int] = set()
    for start, length in ranges:
        blocks.update(range(start // size, (start + length - 1) // size + 1))
    wanted = sorted(blocks)[:MAX_BLOCKS]
    inodes: set[int] = set()
    unowned = False
    for at in range(0, len(wanted), 512):
        batch = " ".join(str(b) for b in wanted[at : at + 512])
        for line in _tool(["debugfs", "-c", "-R", f"icheck {batch}", node]).splitlines()[1:]:
            fields = line.split("\t")
            if len(fields) == 2 and fields[1].strip().isdigit():
                inodes.add(int(fields[1]))
            elif len(fields) == 2:
                unowned = True  # inode tables, bitmaps, descriptors: no inode owns them
    metadata = unowned or any(number < FIRST_EXT_INODE for number in inodes)
    files = sorted(number for number in inodes if number >= FIRST_EXT_INODE)
    paths: set[str] = set()
    if files:
        query = f"ncheck {' '.join(map(str, files))}"
        for line in _tool(["debugfs", "-c", "-R", query, node]).splitlines()[1:]:
            fields = line.split("\t", 1)
            if len(fields) == 2:
                paths.add(re.sub("/+", "/", fields[1].strip()))
    return ([METADATA] if metadata else []) + sorted(paths)


def _ntfs_info(node: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in _tool(["ntfscluster", "-f", "-i", node]).splitlines():
        key, _, value = line.partition(":")
        if value.strip().isdigit():
            out[key.strip()] = int(value.strip())
    return out


def _ntfs_files(node: str, ranges: list[tuple[int, int]]) -> list[str]:
    sector = _ntfs_info(node).get("bytes per sector")
    if not sector:
        return []
    metadata = False
    paths: set[str] = set()
    for start, length in ranges[:MAX_NTFS_RANGES]:
        first, last = start // sector, (start + length - 1) // sector
        text = _tool(["ntfscluster", "-f", "-q", "-s", f"{first}-{last}", node])
        for line in text.splitlines():
            found = _NTFS_HIT.match(line.strip())
            if found is None:
                continue
            path = re.sub(r"/\$[A-Z_]+(\(.*\))?$", "", found.group(2)) or "/"
            if int(found.group(1)) < FIRST_NTFS_INODE or path.startswith("/$"):
                metadata = True
            else:
                paths.add(path)
    return ([METADATA] if metadata else []) + sorted(paths)

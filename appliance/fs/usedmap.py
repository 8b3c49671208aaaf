"""Which byte ranges of a partition hold data.

partclone reads a filesystem's own allocation map and writes it as a ddrescue domain log
(`partclone.<fs> -D`); only its used ("+") ranges need to be copied. Swap is recreated,
not copied. Anything partclone cannot map (no filesystem, an unknown one, LUKS, BitLocker)
is copied whole ("raw").

btrfs is mapped from its own trees by appliance.fs.btrfsmap instead (partclone 0.3.23's btrfs
map misses tree blocks); its method is still "partclone", the name of a filesystem-aware map
(the restore grows those, and manifests already say so).

A dirty NTFS volume (Windows crashed, lost power, or has chkdsk scheduled) is copied raw
too: partclone.ntfs refuses it unless given -I, and its $Bitmap may then miss clusters that
the $LogFile replay would claim, so a mapped copy could silently lose recent data.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import DeviceError, ToolFailed
from appliance.fs.btrfsmap import btrfs_used_ranges
from appliance.fs.extmap import ext_map
from appliance.fs.fatmap import fat_map
from appliance.fs.inodetables import unused_inode_tables
from appliance.fs.kinds import KINDS
from appliance.fs.ntfs import SECTOR_SIZES, parse_boot_sector
from appliance.tools import run

# blkid TYPE -> the partclone program that maps it (from the table of appliance/fs/kinds.py)
PARTCLONE_PROGRAM: dict[str, str] = {
    name: kind.partclone for name, kind in KINDS.items() if kind.partclone is not None
}

SECTOR = 512
# partclone only reads allocation bitmaps or trees, but a large btrfs can take a while.
PARTCLONE_TIMEOUT = 3600.0
# ddrescue mapfile states: finished, non-tried, non-trimmed, non-scraped, bad sector.
_STATUSES = frozenset("+?*/-")
# partclone prefixes its own error messages with the C file that raised them.
_SOURCE_FILE = re.compile(r"[\w-]+\.c: ")
_NTFS_DIRTY = "scheduled for a check"
EXT_FAMILY = frozenset({"ext2", "ext3", "ext4"})


@dataclass(frozen=True)
class UsedMap:
    size: int  # region size in bytes
    ranges: tuple[tuple[int, int], ...]  # (offset, length) from the region start
    method: str  # "partclone" (any fs map) | "raw" | "swap"
    # parts of `ranges` the filesystem itself says are zeros (ext4's unused inode tables,
    # appliance.fs.inodetables): a save need not read them, a restore writes zeros there
    zeros: tuple[tuple[int, int], ...] = ()

    @property
    def used_bytes(self) -> int:
        return sum(length for _, length in self.ranges)


def parse_domain_log(text: str) -> list[tuple[int, int]]:
    """The used ("+") ranges of a ddrescue domain log, as (offset, length), in file order.

    Comment lines start with '#'; the first other line is the current position line.
    ValueError names the first line that is not a valid block line.
    """
    ranges: list[tuple[int, int]] = []
    seen_position = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not seen_position:
            seen_position = True
            continue
        fields = stripped.split()
        if len(fields) != 3 or fields[2] not in _STATUSES:
            raise ValueError(f"line {number} is not 'position size status': {stripped!r}")
        try:
            offset, length = int(fields[0], 0), int(fields[1], 0)
        except ValueError as exc:
            raise ValueError(f"line {number} has an unreadable number: {stripped!r}") from exc
        if offset < 0 or length < 0:
            raise ValueError(f"line {number} has a negative number: {stripped!r}")
        if fields[2] == "+" and length > 0:
            ranges.append((offset, length))
    return ranges


def normalize_ranges(
    ranges: Iterable[tuple[int, int]], size: int, align: int
) -> tuple[tuple[int, int], ...]:
    """Align each range outward to `align`, clip to [0, size), sort and merge touching ones."""
    if align <= 0:
        raise ValueError(f"alignment must be positive, not {align}")
    spans: list[tuple[int, int]] = []
    for offset, length in ranges:
        if length <= 0:
            continue
        start = max(0, offset // align * align)
        end = min(size, -(-(offset + length) // align) * align)
        if start < end:
            spans.append((start, end))
    spans.sort()
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((start, end - start) for start, end in merged)


def used_map(
    node: str, fstype: str | None, size: int, align: int = SECTOR, force: bool = False
) -> UsedMap:
    """The byte ranges of the region at `node` (`size` bytes) that must be copied.

    `force`: map it although it is mounted (partclone refuses a mounted filesystem); only
    for a filesystem mounted read-only, whose blocks cannot change under the save."""
    if fstype == "swap":
        return UsedMap(size, (), "swap")
    if fstype == "btrfs":
        return UsedMap(
            size, normalize_ranges(btrfs_used_ranges(node, size), size, align), "partclone"
        )
    if fstype == "vfat":
        fat = fat_map(node, size)  # the table read whole, not a read() per cluster (fs/fatmap.py)
        if fat is not None:
            return UsedMap(size, normalize_ranges(fat, size, align), "partclone")
    if fstype in EXT_FAMILY:
        mapped = ext_map(node)  # the same bitmaps as partclone's, read faster (fs/extmap.py)
        if mapped is not None:
            used = normalize_ranges(mapped.used, size, align)
            zeros = intersect(inner_ranges(mapped.zeros, size, align), used)
            return UsedMap(size, used, "partclone", zeros)
    return partclone_map(node, fstype, size, align, force)


def partclone_map(
    node: str, fstype: str | None, size: int, align: int = SECTOR, force: bool = False
) -> UsedMap:
    """`used_map` as partclone's map gives it (partclone refuses a mounted filesystem unless
    `force`)."""
    program = PARTCLONE_PROGRAM.get(fstype or "")
    if program is None:
        return _raw(size, align)
    with tempfile.TemporaryDirectory(prefix="appliance-usedmap-") as tmp:
        domain = Path(tmp) / "domain.log"
        logfile = Path(tmp) / "partclone.log"
        # -q: no progress lines; -f 0: its progress thread does not sleep (it is joined at
        # exit, so any interval is paid once per partition: 2.4 s of a 6 s save with -f 1).
        proc = run(
            [
                program,
                "-D",
                "-q",
                "-f",
                "0",
                *(["-F"] if force else []),
                "-s",
                node,
                "-o",
                str(domain),
                "-L",
                str(logfile),
            ],
            check=False,
            timeout=PARTCLONE_TIMEOUT,
        )
        log_text = _read_text(logfile)
        if proc.returncode != 0:
            if fstype == "ntfs" and _NTFS_DIRTY in log_text + proc.stderr:
                return _raw(size, align)
            reason = _last_message(log_text) or _last_message(proc.stderr)
            raise ToolFailed(
                f"partclone could not read the {fstype} filesystem on {node}: "
                f"{reason or f'exit code {proc.returncode}.'}"
            )
        try:
            ranges = parse_domain_log(domain.read_text(encoding="utf-8", errors="replace"))
        except (OSError, ValueError) as exc:
            raise ToolFailed(
                f"partclone wrote no readable map of the {fstype} filesystem on {node}: {exc}"
            ) from exc
    if fstype == "ntfs":
        ranges.extend(_ntfs_boot_backups(node, size))
    used = normalize_ranges(ranges, size, align)
    zeros: tuple[tuple[int, int], ...] = ()
    if fstype == "vfat":
        fat = fat_map(node, size)  # the table read whole, not a read() per cluster (fs/fatmap.py)
        if fat is not None:
            return UsedMap(size, normalize_ranges(fat, size, align), "partclone")
    if fstype in EXT_FAMILY:
        zeros = intersect(inner_ranges(unused_inode_tables(node), size, align), used)
    return UsedMap(size, used, "partclone", zeros)


def inner_ranges(
    ranges: Iterable[tuple[int, int]], size: int, align: int
) -> tuple[tuple[int, int], ...]:
    """Each range shrunk inward to `align` and clipped to [0, size) (what is left of it)."""
    out: list[tuple[int, int]] = []
    for offset, length in ranges:
        start = -(-max(0, offset) // align) * align
        end = min(size, offset + length) // align * align
        if start < end:
            out.append((start, end - start))
    return tuple(sorted(out))


def intersect(
    a: Iterable[tuple[int, int]], b: Iterable[tuple[int, int]]
) -> tuple[tuple[int, int], ...]:
    """The bytes in both sorted, non-overlapping range lists."""
    out: list[tuple[int, int]] = []
    left, right = list(a), list(b)
    i = j = 0
    while i < len(left) and j < len(right):
        lo = max(left[i][0], right[j][0])
        hi = min(left[i][0] + left[i][1], right[j][0] + right[j][1])
        if lo < hi:
            out.append((lo, hi - lo))
        if left[i][0] + left[i][1] < right[j][0] + right[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def subtract(a: Iterable[tuple[int, int]], b: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The bytes of sorted, non-overlapping ranges `a` outside those of `b` (one sweep)."""
    out: list[tuple[int, int]] = []
    cuts = list(b)
    j = 0
    for start, length in a:
        pos, end = start, start + length
        while j < len(cuts) and cuts[j][0] + cuts[j][1] <= pos:
            j += 1  # cuts wholly before this range
        k = j
        while k < len(cuts) and cuts[k][0] < end:
            c_start, c_end = cuts[k][0], cuts[k][0] + cuts[k][1]
            if c_start > pos:
                out.append((pos, c_start - pos))
            pos = max(pos, c_end)
            k += 1
        if pos < end:
            out.append((pos, end - pos))
    return out


def _raw(size: int, align: int) -> UsedMap:
    return UsedMap(size, normalize_ranges([(0, size)], size, align), "raw")


def _ntfs_boot_backups(node: str, size: int) -> list[tuple[int, int]]:
    """Where NTFS keeps its backup boot sector: the partition's last sector and the sector
    just past the volume (total sectors x bytes per sector, from the boot sector)."""
    try:
        with open(node, "rb") as device:
            boot = device.read(SECTOR)
    except OSError as exc:
        raise DeviceError(
            f"Could not read the NTFS boot sector of {node}: {exc.strerror or exc}."
        ) from exc
    ranges = [(size - SECTOR, SECTOR)] if size >= SECTOR else []
    parsed = parse_boot_sector(boot)
    if parsed is not None and parsed.bytes_per_sector in SECTOR_SIZES:
        ranges.append((parsed.backup_offset, parsed.bytes_per_sector))
    return ranges


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _last_message(text: str) -> str:
    """partclone's last error, one line: from its last 'file.c: ' prefix to the end."""
    lines = [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]
    lines = [line for line in lines if not line.startswith("Partclone fail")]
    message = lines[-1] if lines else ""
    for index in range(len(lines) - 1, -1, -1):
        found = _SOURCE_FILE.search(lines[index])
        if found:
            message = " ".join([lines[index][found.end() :], *lines[index + 1 :]])
            break
    return message if not message or message.endswith((".", "!", "?")) else message + "."

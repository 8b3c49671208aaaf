"""What filesystem a partition holds: type, version, label and UUID, from `blkid -p -o export`.

`-p` is libblkid's low-level probe: it reads the device itself and never trusts the blkid
cache, which may be stale after a restore. An unformatted partition is not an error: blkid
then exits 2 (or 0 with only PART_ENTRY_* keys) and every field is None. So is an ambivalent
result (two filesystem signatures, exit 8): the caller must then treat the partition as raw.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from appliance.disk.identity import check_readable
from appliance.errors import DeviceError
from appliance.tools import run

log = logging.getLogger(__name__)

# blkid exit codes (blkid(8)): 0 found, 2 nothing found, 4 usage or other error, 8 ambivalent.
_FOUND, _NOTHING, _AMBIVALENT = 0, 2, 8


@dataclass(frozen=True)
class FsInfo:
    type: str | None = None  # blkid TYPE: ext4, xfs, vfat, ntfs, swap, ...
    version: str | None = None  # blkid VERSION: "1.0", "FAT32"
    label: str | None = None
    uuid: str | None = None
    usage: str | None = None  # blkid USAGE: "filesystem", "other" (swap), "raid", "crypto"


def _unescape(value: str) -> str:
    r"""Undo blkid's export escaping: a backslash makes the next character literal ("a\ b")."""
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            out.append(next(chars, "\\"))
        else:
            out.append(char)
    return "".join(out)


def parse_export(text: str) -> dict[str, str]:
    """Parse the KEY=value lines that `blkid -o export` prints for one device."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if values:
                break  # a blank line ends the first device's block
            continue
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = _unescape(value)
    return values


def fsinfo_from_export(values: dict[str, str]) -> FsInfo:
    """The filesystem fields of a parsed blkid export; all None when blkid found no TYPE."""
    if not values.get("TYPE"):
        return FsInfo()
    return FsInfo(
        type=values["TYPE"],
        version=values.get("VERSION") or None,
        label=values.get("LABEL") or None,
        uuid=values.get("UUID") or None,
        usage=values.get("USAGE") or None,
    )


def probe_filesystem(node: str) -> FsInfo:
    """The filesystem on partition `node`; FsInfo() (all None) when it is unformatted."""
    check_readable(node)
    proc = run(["blkid", "-p", "-o", "export", node], check=False, timeout=60)
    if proc.returncode == _NOTHING:
        return FsInfo()
    if proc.returncode == _AMBIVALENT:
        log.warning("blkid finds more than one signature on %s: %s", node, proc.stderr.strip())
        return FsInfo()
    if proc.returncode != _FOUND:
        detail = proc.stderr.strip().splitlines()
        reason = detail[-1] if detail else f"exit code {proc.returncode}"
        raise DeviceError(f"The filesystem on {node} cannot be identified: {reason}")
    return fsinfo_from_export(parse_export(proc.stdout))


def whole_disk_filesystem(node: str, table: str | None) -> FsInfo | None:
    """The filesystem made on a whole disk without a partition table (`mkfs.ext4 /dev/sdX`),
    or None: the disk has a table, holds nothing blkid knows, or cannot be read."""
    if table is not None:
        return None
    try:
        info = probe_filesystem(node)
    except DeviceError:
        return None
    return info if info.type else None

"""`appliance disks [--json] [--all]`: the machine's disks and their partitions.

JSON output (a stable contract; sizes and offsets in bytes; every key is always present,
null where unknown)::

    {"disks": [{
        "name": "sda", "node": "/dev/sda", "model": str|null, "serial": str|null,
        "size": int, "logical_sector": int, "physical_sector": int,
        "removable": bool, "readonly": bool, "is_loop": bool, "backing_file": str|null,
        "table": "gpt"|"dos"|null,
        "filesystem": {"type": str, "version": str|null, "label": str|null, "uuid": str|null,
                       "usage": str|null}|null,   # a filesystem on the whole disk (no table)
        "table_id": str|null,          # GPT disk GUID (lower case) or MBR id "0x1234abcd"
        "incomplete": str|null,        # "incomplete restore of IMAGE, started TIME": a
                                       # restore or clone onto this disk stopped halfway
        "partitions": [{
            "number": int, "node": str|null,   # null: the kernel has no node for it
            "start": int, "size": int, "end": int,   # end = start + size (first byte after)
            "type": str,                # GPT type GUID (lower case) or MBR type "83", "05", ...
            "kind": "primary"|"extended"|"logical",
            "guid": str|null, "name": str|null,     # GPT partition GUID and name
            "flags": [str, ...],        # libparted flag names: "boot", "esp", "swap", ...
            "fstype": str|null, "fsversion": str|null, "label": str|null, "uuid": str|null
        }, ...]
     }, ...],
     "problems": [{"name": "vda", "node": "/dev/vda", "error": str}, ...]}

"problems" lists disks that exist but could not be probed, each with a sentence saying why.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict
from typing import Any, TextIO

from appliance.devices import Problem, scan_disks
from appliance.fsprobe import FsInfo, whole_disk_filesystem
from appliance.model import Disk, Partition, human_size

GPT_TYPES = {
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI System",
    "21686148-6449-6e6f-744e-656564454649": "BIOS boot",
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap",
    "e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM",
    "a19d880f-05fc-4d3b-a006-743f0f84911e": "Linux RAID",
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "Linux root (x86-64)",
    "933ac7e1-2eb4-4f13-b844-0e14e2aef915": "Linux home",
    "bc13c2ff-59e6-4262-a352-b275fd6f7172": "Linux extended boot",
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Microsoft basic data",
    "e3c9e316-0b5c-4db8-817d-f92df00215ae": "Microsoft reserved",
    "de94bba4-06d1-4d40-a16a-bfd50179d6ac": "Windows recovery",
    "48465300-0000-11aa-aa11-00306543ecac": "Apple HFS+",
    "7c3457ef-0000-11aa-aa11-00306543ecac": "Apple APFS",
}
MBR_TYPES = {
    "01": "FAT12",
    "05": "Extended",
    "06": "FAT16",
    "07": "NTFS/exFAT",
    "0b": "FAT32",
    "0c": "FAT32 (LBA)",
    "0e": "FAT16 (LBA)",
    "0f": "Extended (LBA)",
    "17": "Hidden NTFS",
    "27": "Windows recovery",
    "82": "Linux swap",
    "83": "Linux",
    "85": "Linux extended",
    "8e": "Linux LVM",
    "ee": "GPT protective",
    "ef": "EFI System",
    "fd": "Linux RAID",
}


def type_name(table: str | None, part_type: str) -> str:
    """A partition type as a person reads it; the raw GUID or byte when it is not known."""
    names = GPT_TYPES if table == "gpt" else MBR_TYPES
    return names.get(part_type, part_type)


def partition_json(part: Partition) -> dict[str, Any]:
    return {
        "number": part.number,
        "node": part.node or None,
        "start": part.start,
        "size": part.size,
        "end": part.end,
        "type": part.type,
        "kind": part.kind,
        "guid": part.guid,
        "name": part.name,
        "flags": list(part.flags),
        "fstype": part.fstype,
        "fsversion": part.fsversion,
        "label": part.label,
        "uuid": part.uuid,
    }


def disk_json(disk: Disk, whole_fs: FsInfo | None = None) -> dict[str, Any]:
    return {
        "name": disk.name,
        "node": disk.node,
        "model": disk.model,
        "serial": disk.serial,
        "size": disk.size,
        "logical_sector": disk.logical_sector,
        "physical_sector": disk.physical_sector,
        "removable": disk.removable,
        "readonly": disk.readonly,
        "is_loop": disk.is_loop,
        "backing_file": disk.backing_file,
        "table": disk.table,
        "table_id": disk.table_id,
        "filesystem": asdict(whole_fs) if whole_fs else None,
        "incomplete": disk.incomplete,
        "partitions": [partition_json(part) for part in disk.partitions],
    }


def problem_json(problem: Problem) -> dict[str, Any]:
    return {"name": problem.name, "node": problem.node, "error": problem.error}


def _filesystem(part: Partition) -> str:
    if part.kind == "extended":
        return "(logical partitions)"
    if not part.fstype:
        return "-" if part.node else "(no node)"
    if part.fstype == "vfat" and part.fsversion:
        return f"vfat {part.fsversion}"
    return part.fstype


WIDTH = 80  # the console of the live system


def _table_lines(disk: Disk) -> list[str]:
    header = ("#", "start", "size", "type", "filesystem", "label", "UUID")
    rows = [header]
    for part in disk.partitions:
        rows.append(
            (
                str(part.number),
                str(part.start),
                human_size(part.size),
                type_name(disk.table, part.type),
                _filesystem(part),
                part.label or "-",
                part.uuid or "-",
            )
        )
    widths = [max(len(row[col]) for row in rows) for col in range(len(header))]
    # Too wide for the console: the UUID goes on a line of its own under its partition.
    split = 4 + sum(widths) + 2 * (len(widths) - 1) > WIDTH
    if split:
        widths = widths[:-1]
    right = {0, 1, 2}  # numbers line up on the right
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[col]) if col in right else cell.ljust(widths[col])
            for col, cell in enumerate(row[: len(widths)])
        ]
        lines.append(("    " + "  ".join(cells).rstrip())[:WIDTH])
        if split and row is not header and row[-1] != "-":
            lines.append(f"    {'':{widths[0]}}  UUID {row[-1]}"[:WIDTH])
    return lines


def _whole_disk_line(fs: FsInfo) -> str:
    what = f"{fs.type} {fs.version}" if fs.type == "vfat" and fs.version else str(fs.type)
    label = f' "{fs.label}"' if fs.label else ""
    uuid = f", UUID {fs.uuid}" if fs.uuid else ""
    return f"  no partition table: the whole disk holds a filesystem, {what}{label}{uuid}"


def _wrap(line: str) -> list[str]:
    return textwrap.wrap(line, WIDTH, subsequent_indent="    ", break_on_hyphens=False)


def disk_lines(disk: Disk, whole_fs: FsInfo | None = None) -> list[str]:
    """The human-readable block for one disk, in lines that fit 80 columns."""
    serial = f"serial {disk.serial}" if disk.serial else "no serial"
    lines = [f"{disk.name}  {disk.model or 'Unknown model'}, {serial}"]
    facts = [
        disk.node,
        f"{human_size(disk.size)} ({disk.size} bytes)",
        f"sectors {disk.logical_sector} logical / {disk.physical_sector} physical",
    ]
    if disk.removable:
        facts.append("removable")
    if disk.readonly:
        facts.append("read-only")
    lines += _wrap("  " + ", ".join(facts))
    if disk.is_loop:
        lines += _wrap(f"  file {disk.backing_file}")
    if disk.incomplete:
        lines += _wrap(
            f"  {disk.incomplete}: no valid partition table; run it again to finish it"
        )
    if whole_fs is not None:
        return lines + _wrap(_whole_disk_line(whole_fs))
    if disk.table is None:
        lines.append("  no partition table")
        return lines
    kind = "GPT, disk GUID" if disk.table == "gpt" else "MBR (dos), disk id"
    lines.append(f"  {kind} {disk.table_id or '-'}")
    if not disk.partitions:
        lines.append("  no partitions")
        return lines
    return lines + _table_lines(disk)


def run_disks(all_disks: bool, as_json: bool, out: TextIO) -> int:
    """Print the disks (loop devices too with `all_disks`); exit code 0."""
    scan = scan_disks(include_loop=all_disks)
    whole = {disk.node: whole_disk_filesystem(disk.node, disk.table) for disk in scan.disks}
    if as_json:
        data = {
            "disks": [disk_json(disk, whole[disk.node]) for disk in scan.disks],
            "problems": [problem_json(problem) for problem in scan.problems],
        }
        out.write(json.dumps(data, indent=2) + "\n")
        return 0
    if not scan.disks and not scan.problems:
        hint = "" if all_disks else " (--all lists loop devices too)"
        out.write(f"No disks found{hint}.\n")
    blocks = ["\n".join(disk_lines(disk, whole[disk.node])) for disk in scan.disks]
    out.write("\n\n".join(blocks) + ("\n" if blocks else ""))
    if scan.problems:
        out.write("\n" if blocks else "")
        out.write("Disks that cannot be read:\n")
        for problem in scan.problems:
            out.write("\n".join(_wrap(f"  {problem.name}: {problem.error}")) + "\n")
    return 0

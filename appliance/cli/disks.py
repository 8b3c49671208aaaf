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
        "boot_stick": bool,            # the disk the appliance booted from: only its
                                       # identity is read (table null, no partitions); no
                                       # job reads or writes it
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
     "problems": [{"name": "vda", "node": "/dev/vda", "error": str}, ...],
     "boot_medium": {"mountpoint": str, "fstype": str|null, "in_ram": bool,
                     "note": str|null}|null}

"problems" lists disks that exist but could not be probed, each with a sentence saying why.
"boot_medium" is where live-boot mounted what the appliance booted from (null: not a live
system); "in_ram": booted with toram, so the stick cannot be told apart from other disks
("note" says so, and no disk has "boot_stick": true).
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict
from typing import Any, TextIO

from appliance.disk.bootmedium import BootMedium, find_boot_medium
from appliance.disk.fsprobe import FsInfo, whole_disk_filesystem
from appliance.disk.model import Disk, Partition
from appliance.disk.parttypes import type_name
from appliance.disk.probe import Problem, scan_disks
from appliance.plan.regions import disk_record
from appliance.units import human_size


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
        **disk_record(disk).to_dict(),  # the identity an image's manifest keeps too
        "removable": disk.removable,
        "readonly": disk.readonly,
        "is_loop": disk.is_loop,
        "backing_file": disk.backing_file,
        "table": disk.table,
        "table_id": disk.table_id,
        "filesystem": asdict(whole_fs) if whole_fs else None,
        "incomplete": disk.incomplete,
        "boot_stick": disk.boot_stick,
        "partitions": [partition_json(part) for part in disk.partitions],
    }


def medium_json(medium: BootMedium) -> dict[str, Any] | None:
    if medium.mountpoint is None:
        return None
    return {
        "mountpoint": medium.mountpoint,
        "fstype": medium.fstype,
        "in_ram": medium.in_ram,
        "note": medium.note(),
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
BOOT_STICK = "this boot stick"  # how the disk the appliance booted from is named


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
    if disk.boot_stick:
        return lines + _wrap(
            f"  {BOOT_STICK}: the appliance runs from it; no job reads or writes it"
        )
    if disk.incomplete:
        lines += _wrap(f"  {disk.incomplete}: no valid partition table; run it again to finish it")
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
    medium = find_boot_medium()
    whole = {
        disk.node: None if disk.boot_stick else whole_disk_filesystem(disk.node, disk.table)
        for disk in scan.disks
    }
    if as_json:
        data = {
            "disks": [disk_json(disk, whole[disk.node]) for disk in scan.disks],
            "problems": [problem_json(problem) for problem in scan.problems],
            "boot_medium": medium_json(medium),
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
    note = medium.note()
    if note:
        out.write("\n" + "\n".join(textwrap.wrap(note, WIDTH)) + "\n")
    return 0

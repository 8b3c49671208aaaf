"""`appliance info --repo R --image I [--json]`: what an image holds and how it was saved.

The source disk, its table, and each region (partition): size, filesystem, label, used bytes,
how it was saved (mapped, whole and why, swap), its proof when the manifest has one; then the
warnings, read errors, timings and the tail of the image's log.txt. Lines fit 80 columns.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from appliance.cli.output import print_json
from appliance.jobs.imageinfo import ImageInfo, RegionInfo, image_info
from appliance.repo.records import DiskRecord, TableRecord
from appliance.units import human_size

WIDTH = 80


def wrap(text: str, indent: str = "", later: str | None = None) -> list[str]:
    """`text` as lines of at most 80 columns (long words are cut, never overflow)."""
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=indent,
        subsequent_indent=indent + "  " if later is None else later,
        break_on_hyphens=False,
    ) or [indent.rstrip()]


def proof_text(proof: Any) -> str:
    if isinstance(proof, dict):
        return ", ".join(
            f"{key} {value}" for key, value in proof.items() if value not in (None, "", [], {})
        )
    return str(proof)


def _disk_line(disk: DiskRecord) -> str:
    who = disk.model or "Unknown model"
    facts = [
        f"serial {disk.serial}" if disk.serial else "no serial",
        human_size(disk.size),
        f"{disk.logical_sector}-byte sectors",
    ]
    if disk.name:
        facts.append(f"was {disk.name}")
    return f"Source disk: {who} ({', '.join(facts)})"


def _table_line(table: TableRecord | None) -> str:
    if not table:
        return "Table: none (the disk had no partition table)"
    kind = "GPT, disk GUID" if table.type == "gpt" else "MBR (dos), disk id"
    return f"Table: {kind} {table.id or '-'}, {len(table.partitions)} partitions"


def _region_lines(info: RegionInfo) -> list[str]:
    r = info.region
    if r.partition is None:
        head = f"  {r.name:8} {human_size(r.size):>9}  table and boot area"
    else:
        fs = r.fstype or "unformatted"
        if r.fsversion and r.fstype == "vfat":
            fs = f"{fs} {r.fsversion}"
        label = f' "{r.label}"' if r.label else ""
        head = f"  {r.name:8} {human_size(r.size):>9}  partition {r.partition}, {fs}{label}"
    lines = wrap(head, later=" " * 13)
    body = f"{info.method_text()}; {human_size(r.used_bytes)} used, {r.stored_windows} chunks"
    lines += wrap(body, " " * 13)
    if info.proof is not None:
        lines += wrap(f"proof: {proof_text(info.proof)}", " " * 13)
    if info.index_problem:
        lines += wrap(f"DAMAGED: {info.index_problem}", " " * 13)
    return lines


def info_lines(info: ImageInfo) -> list[str]:
    m = info.manifest
    state = "complete" if m.complete else "INCOMPLETE (not restorable)"
    if m.complete and any(not r.index_ok for r in info.regions):
        state = "DAMAGED (not restorable)"
    lines = wrap(f"Image {m.name}: {state}")
    seconds = m.figures.seconds
    timing = f"Saved {m.created}" + (f", finished {m.finished}" if m.finished else "")
    if seconds is not None:
        timing += f", {float(seconds):.1f} s"
    lines += wrap(f"{timing}; appliance {m.tool_version}")
    lines += wrap(
        f"Verified (every chunk re-hashed): {info.verified}"
        if info.verified
        else "Never verified whole (appliance verify re-hashes every chunk)"
    )
    lines += wrap(_disk_line(m.disk))
    lines += wrap(_table_line(m.table))
    lines.append(
        f"Used {human_size(m.used_bytes)}; the save stored "
        f"{human_size(m.figures.new_bytes)} of new chunks"
    )
    lines.append("Regions:")
    for region in info.regions:
        lines += _region_lines(region)
    warnings = info.warnings
    lines.append("Warnings:" if warnings else "Warnings: none")
    for warning in warnings:
        lines += wrap(f"- {warning}", "  ", "    ")
    errors = info.read_errors
    if errors:
        shown = ", ".join(f"{length} bytes at {start}" for start, length in errors[:5])
        more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
        lines += wrap(f"Read errors (saved as zeros): {shown}{more}")
    else:
        lines.append("Read errors: none")
    if info.log_tail:
        lines.append(f"Log (the last {len(info.log_tail)} lines of log.txt):")
        for line in info.log_tail:
            lines += wrap(line, "  ", "      ")
    return lines


def run_info(args: argparse.Namespace) -> int:
    info = image_info(args.repo, args.image)
    if args.json:
        print_json({"command": "info", **info.to_json()})
    else:
        print("\n".join(info_lines(info)))
    return 0

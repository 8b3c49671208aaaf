"""Writing a partition table: the source's own table (read with `sfdisk --json` from the
source disk, or as the image's manifest recorded it at save time) with each partition
moved or resized as a fit plan says, written by sfdisk, with the boot code put back.

sfdisk keeps every GUID, name, attribute and type we give it, places the GPT backup at the
target's real end, and writes new EBRs for logical partitions. It does not keep the MBR boot
code (bytes 0-439): that is copied back from the source afterwards.
"""

from __future__ import annotations

import json
import os
from typing import Any

from appliance.errors import DeviceError
from appliance.fit import FitPlan
from appliance.tools import run

BOOT_CODE = 440


def read_sfdisk_json(node: str) -> dict[str, Any]:
    """The table as sfdisk sees it (saved in the manifest, so a restore can rewrite it)."""
    proc = run(["sfdisk", "--json", node], check=False)
    if proc.returncode != 0:
        raise DeviceError(f"The partition table of {node} cannot be read: "
                          f"{proc.stderr.strip() or 'sfdisk failed'}.")
    table = json.loads(proc.stdout)["partitiontable"]
    assert isinstance(table, dict)
    return table


def _number(node: str) -> int:
    digits = ""
    for char in reversed(node):
        if not char.isdigit():
            break
        digits = char + digits
    return int(digits)


def script(table: dict[str, Any], plan: FitPlan, target: str) -> str:
    """An sfdisk script for `target`: the table with the plan's starts and sizes."""
    sector = int(table.get("sectorsize", 512))
    lines = [f"label: {table['label']}", f"label-id: {table['id']}", "unit: sectors",
             f"sector-size: {sector}"]
    if table["label"] == "gpt" and "firstlba" in table:
        lines.append(f"first-lba: {table['firstlba']}")
    lines.append("")
    for entry in table.get("partitions", []):
        number = _number(entry["node"])
        part = plan.part(number)
        fields = [f"start={part.new_start // sector}", f"size={part.new_size // sector}",
                  f"type={entry['type']}"]
        if "uuid" in entry:
            fields.append(f"uuid={entry['uuid']}")
        if entry.get("name"):
            fields.append('name="{}"'.format(entry["name"].replace('"', "")))
        if entry.get("attrs"):
            fields.append(f'attrs="{entry["attrs"]}"')
        if entry.get("bootable"):
            fields.append("bootable")
        sep = "p" if target[-1].isdigit() else ""
        lines.append(f"{target}{sep}{number} : {', '.join(fields)}")
    return "\n".join(lines) + "\n"


def write_table(target: str, table: dict[str, Any], plan: FitPlan, boot_code: bytes) -> None:
    """Write the fitted table on `target` and put the boot code back."""
    text = script(table, plan, target)
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", "--wipe", "never", target],
        input_text=text)
    fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.pwrite(fd, boot_code[:BOOT_CODE], 0)
        os.fsync(fd)
    finally:
        os.close(fd)

"""Writing a partition table: the source's own table (read with `sfdisk --json` from the
source disk, or as the image's manifest recorded it at save time) with each partition
moved or resized as a fit plan says, written by sfdisk on a scratch file of the target's
size; the restore copies its sectors to the target, the headers last.

sfdisk keeps every GUID, name, attribute and type we give it, places the GPT backup at the
target's real end, and writes new EBRs for logical partitions. It does not keep the MBR boot
code (bytes 0-439): that is taken from the source.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from appliance.disk.identity import partition_number
from appliance.disk.parted import read_sfdisk
from appliance.errors import DeviceError
from appliance.plan.fit import FitPlan
from appliance.tools import run

BOOT_CODE = 440
LOOP_SET_STATUS64 = 0x4C04
LOOP_GET_STATUS64 = 0x4C05
LO_FLAGS_AUTOCLEAR = 4
_LOOP_INFO64_SIZE = 232  # struct loop_info64
_LO_FLAGS_AT = 52  # its lo_flags: after five u64 and three u32
_BACKUP = re.compile(r"-0x([0-9a-f]+)\.bak$")


def read_sfdisk_json(node: str) -> dict[str, Any]:
    """The table as sfdisk sees it (saved in the manifest, so a restore can rewrite it)."""
    table = read_sfdisk(node)
    if table is None:
        raise DeviceError(f"The partition table of {node} cannot be read: sfdisk finds none.")
    return table.document


def script(table: dict[str, Any], plan: FitPlan, target: str) -> str:
    """An sfdisk script for `target`: the table with the plan's starts and sizes."""
    sector = int(table.get("sectorsize", 512))

    def place(number: int, entry: dict[str, Any]) -> tuple[int, int]:
        part = plan.part(number)
        return part.new_start // sector, part.new_size // sector

    return _script(table, target, place)


def saved_script(table: dict[str, Any], target: str) -> str:
    """An sfdisk script for `target`: the table with its own starts and sizes (in sectors)."""
    return _script(table, target, lambda number, entry: (entry["start"], entry["size"]))


def _script(
    table: dict[str, Any], target: str, place: Callable[[int, dict[str, Any]], tuple[int, int]]
) -> str:
    lines = [f"label: {table['label']}"]
    if table.get("id"):
        lines.append(f"label-id: {table['id']}")
    lines += ["unit: sectors", f"sector-size: {int(table.get('sectorsize', 512))}"]
    if table["label"] == "gpt" and "firstlba" in table:
        lines.append(f"first-lba: {table['firstlba']}")
    lines.append("")
    for entry in table.get("partitions", []):
        number = partition_number(entry["node"])
        if number is None:
            raise DeviceError(
                f"The recorded table names a partition {entry['node']} without a number."
            )
        start, size = place(number, entry)
        fields = [f"start={start}", f"size={size}"]
        if entry.get("type"):
            fields.append(f"type={entry['type']}")
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


@contextlib.contextmanager
def _scratch_loop(path: str, sector: int) -> Iterator[str]:
    """A loop device with `sector`-byte sectors over the scratch file, held open and marked
    autoclear: the kernel detaches it at its last close, even when this process is killed."""
    node = run(["losetup", "--find", "--show", "--sector-size", str(sector), path]).stdout.strip()
    fd = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = bytearray(fcntl.ioctl(fd, LOOP_GET_STATUS64, bytes(_LOOP_INFO64_SIZE)))
        flags = int.from_bytes(info[_LO_FLAGS_AT : _LO_FLAGS_AT + 4], "little")
        info[_LO_FLAGS_AT : _LO_FLAGS_AT + 4] = (flags | LO_FLAGS_AUTOCLEAR).to_bytes(4, "little")
        fcntl.ioctl(fd, LOOP_SET_STATUS64, bytes(info))
    except OSError as exc:
        os.close(fd)
        run(["losetup", "--detach", node], check=False)
        raise DeviceError(
            f"A scratch loop device for the new table cannot be set up: {exc.strerror}."
        ) from exc
    try:
        yield node
    finally:
        os.close(fd)  # the last close: the kernel detaches it (never detach by name after)


def table_sectors(table: dict[str, Any], plan: FitPlan, size: int, sector: int) -> dict[int, bytes]:
    """The sectors of the fitted table, offset -> bytes, as sfdisk writes them on a disk of
    `size` bytes: on a sparse scratch file of that size (through a loop device with the
    target's sector size when it is not 512), never on the target itself. Which sectors make
    the table is sfdisk's own answer (--backup-pt-sectors: MBR and EBRs, or the protective
    MBR, both GPT headers and both entry arrays)."""
    with tempfile.TemporaryDirectory(prefix="appliance-table-") as folder:
        path = os.path.join(folder, "disk")
        with open(path, "wb") as handle:
            handle.truncate(size)
        with contextlib.ExitStack() as stack:
            node = stack.enter_context(_scratch_loop(path, sector)) if sector != 512 else path
            run(
                ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", "--wipe", "never", node],
                input_text=script(table, plan, node),
            )
            run(["sfdisk", "--backup-pt-sectors", node, "-O", os.path.join(folder, "t")])
        out: dict[int, bytes] = {}
        for name in os.listdir(folder):
            found = _BACKUP.search(name)
            if found and name.startswith("t-"):
                with open(os.path.join(folder, name), "rb") as handle:
                    out[int(found.group(1), 16)] = handle.read()
    if not out or 0 not in out:
        raise DeviceError("sfdisk wrote no partition table on the scratch copy of the target.")
    return out

"""One disk's partitions: number, filesystem, label, size and used space."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from appliance.disk.model import Disk
from appliance.disk.parttypes import type_name
from appliance.plan.preflight import Usage
from appliance.units import human_size
from tui.widgets.disktable import fit
from tui.widgets.keyedtable import Cell, KeyedTable


def used_text(usage: Usage | None, measuring: bool) -> Cell:
    if usage is None:
        return Text("measuring" if measuring else "-", style="dim")
    if usage.method == "swap":
        return Text("swap", style="dim")
    if usage.used is None:
        return Text("unknown", style="dim")
    share = f" {100 * usage.used / usage.size:.0f}%" if usage.size else ""
    if usage.method == "raw":
        return Text(f"all (raw){share}", style="bold")
    return f"{human_size(usage.used)}{share}"


class PartitionTable(KeyedTable):
    """Partitions of the highlighted disk, with the used space once it is measured."""

    DEFAULT_CSS = """
    PartitionTable { max-height: 10; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(
            ("#", "Filesystem", "Label", "Size", "Used", "Type"), id=id, classes=classes
        )

    def type_width(self) -> int:
        width = self.size.width or (self.app.size.width - 2)
        return max(10, min(24, width - 66 - 2))

    def show(
        self, disk: Disk | None, usage: Sequence[Usage] | None, whole_fs: str | None = None
    ) -> None:
        """`whole_fs`: a filesystem made on the whole disk (no table), e.g. "ext4 DATA"."""
        rows: list[tuple[str, list[Cell]]] = []
        if disk is not None:
            by_number = {u.partition: u for u in usage or () if u.partition is not None}
            for part in disk.partitions:
                fs = part.fstype or ("(extended)" if part.kind == "extended" else "-")
                if part.fsversion and part.fstype == "vfat":
                    fs = f"{fs} {part.fsversion}"
                rows.append(
                    (
                        str(part.number),
                        [
                            str(part.number),
                            fs,
                            fit(part.label or part.name or "", 16),
                            human_size(part.size),
                            ""
                            if part.kind == "extended"
                            else used_text(by_number.get(part.number), usage is None),
                            fit(type_name(disk.table, part.type), self.type_width()),
                        ],
                    )
                )
            if not disk.partitions and whole_fs:
                rows.append(
                    (
                        "whole",
                        [
                            Text("disk", style="italic"),
                            whole_fs.split(" ")[0],
                            fit(whole_fs.partition(" ")[2], 16),
                            human_size(disk.size),
                            "",
                            Text("whole disk, no partition table", style="italic"),
                        ],
                    )
                )
            elif disk.boot_stick:
                words = "this boot stick: the appliance runs from it; never read or written"
                rows.append(("none", [Text(words, style="italic dim"), "", "", "", "", ""]))
            elif not disk.partitions:
                text = "no partition table" if disk.table is None else "no partitions"
                rows.append(("none", [Text(text, style="italic"), "", "", "", "", ""]))
        self.replace_rows(rows)

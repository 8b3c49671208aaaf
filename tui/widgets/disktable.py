"""The machine's disks, a row each: named by model, serial and size, not only by kernel name.

The stick the appliance booted from is shown greyed as "this boot stick" in every list; the
screens refuse it when it is chosen (FlowScreen.usable), with the engine's sentence."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rich.text import Text

from appliance.disk.model import Disk
from appliance.units import human_size
from tui.widgets.keyedtable import Cell, KeyedTable

NONE_KEY = "-"
# The first row of a table of disks to erase: the cursor starts there, never on a disk, so
# the target is always chosen by the user (not whatever was highlighted before).
CHOOSE_TARGET = "(choose a disk)"
BOOT_STICK = "this boot stick"  # the note of the disk the appliance booted from


def fit(text: str, width: int) -> str:
    """`text` cut to `width` characters, with an ellipsis when cut."""
    return text if len(text) <= width else text[: max(width - 1, 1)] + "\u2026"


def fit_tail(text: str, width: int) -> str:
    """`text` cut to its last `width` characters (a serial's end tells disks apart)."""
    return text if len(text) <= width else "\u2026" + text[-(width - 1) :]


def table_name(disk: Disk) -> str:
    if disk.boot_stick:
        return "-"  # not read: a hybrid ISO's table is no table a job could use
    return {"gpt": "GPT", "dos": "MBR"}.get(disk.table or "", "none")


def greyed(cells: list[Cell]) -> list[Cell]:
    """A row that cannot be chosen: every cell dimmed."""
    return [
        Text(cell.plain, style=f"{cell.style} dim".strip())
        if isinstance(cell, Text)
        else Text(cell, style="dim")
        for cell in cells
    ]


class DiskTable(KeyedTable):
    """Disks with their identity. `none_row` adds a first row that stands for "no disk"."""

    def __init__(
        self,
        *,
        none_row: str | None = None,
        none_column: int = 0,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(
            ("Disk", "Model", "Serial", "Size", "Table", "Note"), id=id, classes=classes
        )
        self.none_row = none_row
        self.none_column = none_column  # where its words go (1: the wide Model column)
        self.disks: dict[str, Disk] = {}
        self._last: tuple[list[Disk], dict[str, str], dict[str, str]] = ([], {}, {})
        self._width = 0

    def show(
        self,
        disks: Iterable[Disk],
        labels: Mapping[str, str] | None = None,
        notes: Mapping[str, str] | None = None,
    ) -> None:
        labels = labels or {}
        notes = notes or {}
        self._last = (list(disks), dict(labels), dict(notes))
        rows: list[tuple[str, list[Cell]]] = []
        if self.none_row:
            cells: list[Cell] = ["-" if self.none_column else "", "", "", "", "", ""]
            words = (
                self.none_row if not self.none_column else fit(self.none_row, self.model_width())
            )
            cells[self.none_column] = Text(words, style="italic")
            rows.append((NONE_KEY, cells))
        self.disks = {}
        for disk in self._last[0]:
            self.disks[disk.name] = disk
            note = " ".join(x for x in (labels.get(disk.name), notes.get(disk.name)) if x)
            model = disk.model or "Unknown model"
            cells = [
                Text(disk.name, style="bold"),
                fit(model, self.model_width()),
                fit_tail(disk.serial or "-", 16),
                human_size(disk.size),
                table_name(disk),
                Text(fit(BOOT_STICK if disk.boot_stick else note, 16), style="italic"),
            ]
            rows.append((disk.name, greyed(cells) if disk.boot_stick else cells))
        self.replace_rows(rows)

    def on_resize(self) -> None:
        if self.size.width != self._width:
            self._width = self.size.width
            self.show(*self._last)

    def model_width(self) -> int:
        """What is left for the model once the other columns have their room."""
        width = self.size.width or (self.app.size.width - 2)
        return max(12, min(30, width - 49 - 2 * 6 - 2))

    def current_disk(self) -> Disk | None:
        key = self.current_key()
        return self.disks.get(key) if key else None

    def none_selected(self) -> bool:
        return self.current_key() == NONE_KEY

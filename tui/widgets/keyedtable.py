"""A DataTable whose rows have stable keys: refilled in place, the cursor stays on its row."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

Cell = str | Text


class KeyedTable(DataTable[Cell]):
    """Rows are replaced as a whole; the highlighted row is kept by key."""

    DEFAULT_CSS = """
    KeyedTable { height: auto; max-height: 12; }
    """

    def __init__(
        self, columns: Sequence[str], *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, id=id, classes=classes)
        self._columns = list(columns)
        self.keys: list[str] = []

    def on_mount(self) -> None:
        self.add_columns(*self._columns)

    def replace_rows(self, rows: Sequence[tuple[str, Sequence[Cell]]]) -> None:
        """Show `rows` (key, cells), keeping the cursor on the same key when it is still there."""
        if not self.columns:
            self.add_columns(*self._columns)
        current = self.current_key()
        self.clear()
        self.keys = []
        for key, cells in rows:
            self.add_row(*cells, key=key)
            self.keys.append(key)
        if current in self.keys:
            self.move_cursor(row=self.keys.index(current), animate=False)
        elif self.keys:
            self.move_cursor(row=0, animate=False)

    def current_key(self) -> str | None:
        if not self.keys or self.cursor_row < 0 or self.cursor_row >= len(self.keys):
            return None
        return self.keys[self.cursor_row]

    def select_key(self, key: str) -> bool:
        if key in self.keys:
            self.move_cursor(row=self.keys.index(key), animate=False)
            return True
        return False

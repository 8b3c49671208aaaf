"""The first line of every screen: what this is, and which repository is in use."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from appliance.units import human_size
from tui.session import Session


class TopBar(Static):
    DEFAULT_CSS = """
    TopBar { height: 1; background: $panel; color: $foreground; padding: 0 1; }
    TopBar:ansi { background: ansi_blue; color: ansi_bright_white; }
    """

    def __init__(self, screen_title: str, session: Session, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.screen_title = screen_title
        self.session = session

    def on_mount(self) -> None:
        self.session.repo_changed.subscribe(self, lambda _: self.redraw())
        self.redraw()

    def redraw(self) -> None:
        repo = self.session.repo
        text = Text()
        text.append(f"Disk imaging appliance - {self.screen_title}", style="bold")
        if self.session.demo:
            text.append(" ")
            text.append("DEMO", style="bold reverse")
        where = repo.path or "no repository chosen (P)"
        free = f", {human_size(repo.free)} free" if repo.free is not None else ""
        right = f"Repository: {where}{free}"
        width = max(self.size.width - 2, 40)
        room = width - text.cell_len - 2
        if len(right) > room > 10:
            right = "\u2026" + right[-(room - 1) :]
        text.append(" " * max(room - len(right), 1) + "  ")
        text.append(right)
        self.update(text)

    def on_resize(self) -> None:
        self.redraw()

"""Home: the disks and their partitions, the repository in use, and the four jobs."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Static

from appliance.disk.probe import Scan
from tui.messages import DisksChanged
from tui.screens.browse import BrowseScreen
from tui.screens.clone import CloneScreen
from tui.screens.repository import RepositoryScreen
from tui.screens.restore import RestoreScreen
from tui.screens.room import RoomScreen
from tui.screens.save import SaveScreen
from tui.screens.verify import VerifyScreen
from tui.screens.writefile import WriteFileScreen
from tui.session import Session
from tui.widgets.disktable import DiskTable
from tui.widgets.parttable import PartitionTable
from tui.widgets.topbar import TopBar


class HomeScreen(Screen[None]):
    DEFAULT_CSS = """
    HomeScreen #problems { color: $warning; height: auto; display: none; }
    HomeScreen #problems.-shown { display: block; }
    HomeScreen #jobs { height: 1; margin-top: 1; }
    HomeScreen #jobs Button { margin-right: 1; width: auto; min-width: 8; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "save", "Save"),
        Binding("r", "restore", "Restore"),
        Binding("c", "clone", "Clone"),
        Binding("v", "verify", "Verify"),
        Binding("w", "write_file", "Write file"),
        Binding("b", "browse", "Browse files"),
        Binding("p", "repository", "Repository"),
        Binding("f5", "rescan", "Rescan"),
        Binding("q", "app.quit", "Quit"),
        # not in the footer yet: a new key there changes every Home snapshot (docs/tui.md)
        Binding("m", "room", "Room (multicast)", show=False),
    ]

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

    def compose(self) -> ComposeResult:
        yield TopBar("Home", self.session)
        with VerticalScroll():
            yield Static("Disks", classes="section")
            yield DiskTable(id="disks")
            yield Static("", id="parts-title", classes="section")
            yield PartitionTable(id="parts")
            yield Static("", id="problems")
            with Horizontal(id="jobs"):
                yield Button("Save", id="save", compact=True, variant="primary")
                yield Button("Restore", id="restore", compact=True, variant="warning")
                yield Button("Clone", id="clone", compact=True, variant="warning")
                yield Button("Verify", id="verify", compact=True)
                yield Button("Write file", id="write_file", compact=True, variant="warning")
                yield Button("Browse", id="browse", compact=True, variant="success")
                yield Button("Repository", id="repository", compact=True)
                yield Button("Quit", id="quit", compact=True)
            yield Static(
                "Save copies a whole disk into an image. Restore, Clone and Write file ERASE "
                "the disks you choose, after you type their names. Nothing is written until "
                "then. Browse copies files out of an image; it replaces nothing.",
                classes="hint",
            )
        yield Footer()

    def on_mount(self) -> None:
        session = self.session
        session.disks_changed.subscribe(self, self._show)
        session.usage_changed.subscribe(self, self._usage)
        session.repo_changed.subscribe(self, lambda _: self._show(session.disks))
        self._show(session.disks)
        self.query_one(DiskTable).focus()

    def _show(self, scan: Scan) -> None:
        session = self.session
        table = self.query_one(DiskTable)
        table.show(scan.disks, session.backend.labels, session.disk_notes(scan))
        problems = self.query_one("#problems", Static)
        if scan.problems:
            problems.update("\n".join(f"{p.node}: {p.error}" for p in scan.problems))
            problems.add_class("-shown")
        else:
            problems.remove_class("-shown")
        if not scan.disks:
            self.query_one("#parts-title", Static).update("No disks found yet.")
        self._show_parts()

    def _usage(self, name: str) -> None:
        disk = self.query_one(DiskTable).current_disk()
        if disk is not None and disk.name == name:
            self._show_parts()

    def _show_parts(self) -> None:
        disk = self.query_one(DiskTable).current_disk()
        title = self.query_one("#parts-title", Static)
        if disk is None:
            self.query_one(PartitionTable).show(None, None)
            return
        label = self.session.label(disk)
        text = Text(f"Partitions of {disk.describe()}")
        if label:
            text.append(f" - {label}")
        title.update(text)
        self.query_one(PartitionTable).show(
            disk, self.session.usage_of(disk), self.session.whole_fs.get(disk.name)
        )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "disks":
            self._show_parts()

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        action = event.button.id or ""
        if action == "quit":
            await self.run_action("app.quit")
            return
        getattr(self, f"action_{action}")()

    def _selected(self) -> Any:
        return self.query_one(DiskTable).current_disk()

    def action_save(self) -> None:
        disk = self._selected()
        self.app.push_screen(SaveScreen(self.session, disk.name if disk else None))

    def action_restore(self) -> None:
        self.app.push_screen(RestoreScreen(self.session))

    def action_clone(self) -> None:
        disk = self._selected()
        self.app.push_screen(CloneScreen(self.session, disk.name if disk else None))

    def action_verify(self) -> None:
        self.app.push_screen(VerifyScreen(self.session))

    def action_write_file(self) -> None:
        self.app.push_screen(WriteFileScreen(self.session))

    def action_browse(self) -> None:
        self.app.push_screen(BrowseScreen(self.session))

    def action_room(self) -> None:
        self.app.push_screen(RoomScreen(self.session))

    def action_repository(self) -> None:
        self.app.push_screen(RepositoryScreen(self.session))

    def action_rescan(self) -> None:
        self.app.post_message(DisksChanged())
        self.notify("Looking for disks again.", timeout=2)

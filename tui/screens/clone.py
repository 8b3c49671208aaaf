"""Clone: disk to disk. Pick the source, then the disk to overwrite; the same confirmation as
a restore."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Static

from appliance.disk.model import Disk
from tui.backend import CLONE_MISSING
from tui.messages import Planned
from tui.screens.flow import FlowScreen
from tui.session import Session
from tui.widgets.disktable import CHOOSE_TARGET, DiskTable
from tui.widgets.errorline import ErrorLine
from tui.widgets.topbar import TopBar


class CloneScreen(FlowScreen):
    def __init__(self, session: Session, preselect: str | None = None) -> None:
        super().__init__(session)
        self.preselect = preselect
        self.source: Disk | None = None
        self.available = True

    def compose(self) -> ComposeResult:
        yield TopBar("Clone a disk onto another", self.session)
        with VerticalScroll():
            yield Static("1. The disk to copy from: arrows, then Enter", id="step1", classes="step")
            yield DiskTable(id="source")
            yield Static(
                "2. The disk to ERASE and copy onto: arrows, then Enter", id="step2", classes="step"
            )
            yield DiskTable(id="target", none_row=CHOOSE_TARGET, none_column=1)
            yield ErrorLine()
            yield Static(
                "The last partition is grown or shrunk to fit the target. Nothing is "
                "written until you type the target's name.",
                classes="hint",
            )
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        source = self.query_one("#source", DiskTable)
        if self.preselect:
            source.select_key(self.preselect)
        source.focus()
        self.available = self.session.backend.clone_available()
        if not self.available:
            self.say(CLONE_MISSING)

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False)
    def make_plan(self, source: Disk, target: Disk) -> Planned:
        return Planned(self.session.backend.plan_clone(source.name, target.name))

    def on_planned(self, message: Planned) -> None:
        self.confirm_then_start(message.plan, avoid=[self.source.name] if self.source else [])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if not self.available:
            self.say(CLONE_MISSING)
            return
        self.unsay()
        if event.data_table.id == "source":
            self.source = self.disk_or_say("source", "the disk to copy from")
            if self.source is not None:
                self.mark_step("step1", True)
                self.query_one("#target", DiskTable).focus()
            return
        if self.source is None:
            self.say("Choose the disk to copy from first (arrows, then Enter).")
            self.query_one("#source", DiskTable).focus()
            return
        target = self.disk_or_say("target", "the disk to copy onto")
        if target is None:
            return
        if target.name == self.source.name:
            self.say("The disk to copy onto is the disk to copy from; choose another one.")
            return
        self.query_one(ErrorLine).note(f"Checking {target.node}...")
        self.make_plan(self.source, target)

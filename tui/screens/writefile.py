"""Write an image file (.img, .iso, compressed, in a zip, a VM disk) onto one or more disks: the USB
stick duplicator's job. Type the file's path, mark the disks with Enter, then W; every disk
is confirmed on its own (its name typed), and one read of the file writes them all."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Input, Static

from appliance.disk.model import Disk
from appliance.disk.probe import Scan
from tui.jobspec import WritePlan
from tui.messages import FilePlanned
from tui.screens.confirm import ConfirmScreen
from tui.screens.flow import FlowScreen
from tui.session import Session
from tui.widgets.disktable import CHOOSE_TARGET, DiskTable
from tui.widgets.errorline import ErrorLine
from tui.widgets.topbar import TopBar

CHOSEN = "WRITE"  # the note a marked disk gets in the table


class WriteFileScreen(FlowScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        *FlowScreen.BINDINGS,
        Binding("w", "write", "Write to the marked disks"),
    ]

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.chosen: list[str] = []  # kernel names, in the order they were marked

    def compose(self) -> ComposeResult:
        yield TopBar("Write an image file onto disks", self.session)
        with VerticalScroll():
            yield Static(
                "1. The image file (.img .iso .bin, compressed or zipped, or a VM disk such as "
                ".qcow2 .vhdx .vmdk): its full path, then Enter",
                id="step1",
                classes="step",
            )
            yield Input(value=self._start_path(), id="file")
            yield Static(
                "2. The disks to ERASE: Enter marks or unmarks a disk; then W writes",
                id="step2",
                classes="step",
            )
            yield DiskTable(id="target", none_row=CHOOSE_TARGET, none_column=1)
            yield Static("", id="chosen")
            yield ErrorLine()
            yield Static(
                "The file is read once for all the disks; each disk is then read back and "
                "compared with it. Nothing is written until you type each disk's name.",
                classes="hint",
            )
        yield Footer()

    def _start_path(self) -> str:
        repo = self.session.repo.path
        return f"{repo.rstrip('/')}/" if repo else "/"

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(Input).focus()

    def disks_changed(self, scan: Scan) -> None:
        present = {d.name for d in scan.disks}
        self.chosen = [name for name in self.chosen if name in present]  # unplugged: dropped
        notes = self.session.disk_notes(scan)
        notes.update({name: CHOSEN for name in self.chosen})
        for table in self.query(DiskTable):
            table.show(scan.disks, self.session.backend.labels, notes)
        self._show_chosen()

    def _show_chosen(self) -> None:
        words = ", ".join(f"/dev/{name}" for name in self.chosen) or "none yet"
        self.query_one("#chosen", Static).update(f"Marked to be erased: {words}")

    # -- the file --------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        path = Path(event.value.strip())
        if not path.is_absolute() or not (path.is_file() or path.parent.is_dir()):
            self.say("Type the image file's full path, starting with /.")
            return
        self.unsay()
        self.mark_step("step1", True)
        self.query_one(DiskTable).focus()

    # -- the disks -------------------------------------------------------------------------
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.unsay()
        disk = self.query_one(DiskTable).current_disk()
        if disk is None:
            self.say("Choose a disk (arrows), then Enter marks it.")
            return
        if not self.usable(disk):
            return
        if disk.name in self.chosen:
            self.chosen.remove(disk.name)
        else:
            self.chosen.append(disk.name)
        self.disks_changed(self.session.disks)

    def action_write(self) -> None:
        if self.focused is self.query_one(Input):
            return  # "w" typed in the path
        path = self.query_one(Input).value.strip()
        if not path.startswith("/"):
            self.say("Type the image file's full path first.")
            self.query_one(Input).focus()
            return
        if not self.chosen:
            self.say("Mark the disks to write with Enter first.")
            return
        self.query_one(ErrorLine).note(f"Checking {path} and {len(self.chosen)} disk(s)...")
        self.make_plans(path, list(self.chosen))

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False)
    def make_plans(self, path: str, targets: list[str]) -> FilePlanned:
        return FilePlanned(self.session.backend.plan_write_file(path, targets))

    def on_file_planned(self, message: FilePlanned) -> None:
        self.unsay()
        self._confirm(message.plans, [])

    def _confirm(self, plans: Sequence[WritePlan], confirmed: list[WritePlan]) -> None:
        """One confirmation per disk, each its name typed; a disk refused stops them all."""
        if len(confirmed) == len(plans):
            spec = self.session.backend.write_file_job(confirmed)
            avoid = [p.target.name for p in confirmed]
            self.start_job(spec, writable=False, avoid=avoid)
            return
        plan = plans[len(confirmed)]

        def answered(yes: bool | None) -> None:
            if not yes:
                names = ", ".join(p.target.node for p in plans)
                self.say(f"Nothing was written to {names}.")
                return
            self._confirm(plans, [*confirmed, plan])

        self.app.push_screen(ConfirmScreen(plan, blink=self.session.blink), answered)

    def chosen_disks(self) -> list[Disk]:
        by_name = {d.name: d for d in self.session.disks.disks}
        return [by_name[name] for name in self.chosen if name in by_name]

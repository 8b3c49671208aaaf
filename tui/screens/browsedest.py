"""Where copied files go: a filesystem of another disk. The disks the image is read from
(the repository's), and the stick the appliance started from, are not offered; the chosen
filesystem is mounted read-write by the Browse screen, which unmounts it when it closes."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState

from appliance.repo.mount import Volume
from tui.messages import VolumesListed
from tui.session import Session
from tui.widgets.errorline import ErrorLine
from tui.widgets.topbar import TopBar
from tui.widgets.volumetable import VolumeTable


class BrowseDestScreen(Screen[Volume | None]):
    DEFAULT_CSS = """
    BrowseDestScreen TopBar { background: $success-darken-2; }
    BrowseDestScreen VerticalScroll { padding: 0 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]

    def __init__(self, session: Session, avoid: set[str]) -> None:
        super().__init__()
        self.session = session
        self.avoid = avoid  # the disks the image is read from

    def compose(self) -> ComposeResult:
        yield TopBar("Copy files to... (nothing on any disk is replaced)", self.session)
        with VerticalScroll():
            yield Static(
                "The filesystem to copy into: arrows, then Enter. The files go into a new "
                "folder recovered-IMAGE on it; a name that is taken gets a number, nothing "
                "is overwritten.",
                classes="hint",
            )
            yield VolumeTable(id="dests")
            yield ErrorLine()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(VolumeTable).focus()
        self.list_volumes()

    @work(thread=True, exclusive=True, group="volumes", exit_on_error=False)
    def list_volumes(self) -> VolumesListed:
        disks = self.session.disks.disks
        return VolumesListed(self.session.backend.copy_destinations(disks, self.avoid))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.SUCCESS and isinstance(event.worker.result, VolumesListed):
            volumes = event.worker.result.volumes
            self.query_one(VolumeTable).show(volumes)
            if not volumes:
                self.query_one(ErrorLine).say(
                    "No filesystem of another disk is found: plug in a disk (USB) and wait "
                    "a moment, then go back and press C again."
                )
        elif event.state == WorkerState.ERROR and event.worker.error is not None:
            self.query_one(ErrorLine).say(self.session.sentence(event.worker.error))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        volume = self.query_one(VolumeTable).current_volume()
        if volume is not None:
            self.dismiss(volume)

    def action_back(self) -> None:
        self.dismiss(None)

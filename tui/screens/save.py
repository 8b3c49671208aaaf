"""Save: pick the disk, name the image, read the preflight, then go."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, DataTable, Footer, Input, Static
from textual.worker import get_current_worker

from appliance.disk.model import Disk
from appliance.errors import ApplianceError, RepositoryError
from appliance.jobs.catalog import ImageSummary
from appliance.plan.preflight import Preflight
from appliance.repo.repository import check_image_name, holds_repository
from tui.jobspec import default_image_name, unique_name
from tui.messages import Checked
from tui.screens.flow import FlowScreen
from tui.session import Session
from tui.widgets.disktable import DiskTable
from tui.widgets.errorline import ErrorLine
from tui.widgets.findings import FindingList
from tui.widgets.topbar import TopBar


class SaveScreen(FlowScreen):
    DEFAULT_CSS = """
    SaveScreen Input, SaveScreen Input:focus {
        width: 1fr; max-width: 72; border: round $secondary;
    }
    SaveScreen FindingList { margin-top: 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("f2", "start", "Start the save")]

    def __init__(self, session: Session, preselect: str | None = None) -> None:
        super().__init__(session)
        self.preselect = preselect
        self.disk: Disk | None = None
        self.preflight: Preflight | None = None
        self.images: dict[str, ImageSummary] = {}

    def compose(self) -> ComposeResult:
        yield TopBar("Save a disk into an image", self.session)
        with VerticalScroll():
            yield Static("1. The disk to save: arrows, then Enter", id="step1", classes="step")
            yield DiskTable(id="source")
            yield Static(
                "2. The image's name: Enter (or F2) starts the save", id="step2", classes="step"
            )
            yield Input(
                placeholder="choose the disk first", id="name", max_length=100, disabled=True
            )
            yield FindingList()
            yield ErrorLine()
            with Horizontal(classes="buttons"):
                yield Button(
                    "Start the save (F2)",
                    id="start",
                    variant="primary",
                    compact=True,
                    disabled=True,
                )
                yield Button("Back (Esc)", id="back", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(Input).cursor_blink = self.session.blink
        table = self.query_one(DiskTable)
        if self.preselect:
            table.select_key(self.preselect)
        table.focus()
        self.query_one(FindingList).show(
            None, "Choose a disk: the checks run before anything is saved."
        )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        disk = self.query_one(DiskTable).current_disk()
        if disk is None:
            return
        self.unsay()
        if not self.usable(disk):  # the boot stick: nothing chosen, nothing to start
            self.disk = None
            self.preflight = None
            self.query_one("#start", Button).disabled = True
            self.query_one(FindingList).show(None, "Choose another disk.")
            return
        self.disk = disk
        self.preflight = None
        self.query_one("#start", Button).disabled = True
        self.query_one(FindingList).show(
            None, f"Checking {disk.describe()}: measuring the used space of each partition..."
        )
        name = self.query_one(Input)
        name.disabled = False
        backend = self.session.backend
        name.value = default_image_name(disk, backend.today(), backend.labels.get(disk.name))
        name.focus()
        self.mark_step("step1", True)
        self._check(disk)

    @work(thread=True, exclusive=True, group="preflight", exit_on_error=False)
    def _check(self, disk: Disk) -> Checked:
        session = self.session
        repo = session.prepare_repo(writable=False, avoid=[disk.name])
        images: dict[str, ImageSummary] = {}
        try:
            images = {i.name: i for i in session.backend.images(repo)}
        except RepositoryError:
            if holds_repository(repo):
                raise  # a damaged repository; a missing one is made by the save
        preflight = session.backend.preflight(disk, repo)
        if get_current_worker().is_cancelled:
            raise ApplianceError("The check was replaced by a newer one.")
        return Checked(disk, preflight, images)

    def worker_failed(self, group: str) -> None:
        if group == "preflight":
            self.query_one(FindingList).show(None, "The checks could not run.")

    def on_checked(self, message: Checked) -> None:
        if self.disk is None or message.disk.name != self.disk.name:
            return
        preflight = message.preflight
        images = message.images
        self.preflight = preflight
        self.images = images
        name = self.query_one(Input)
        done = {n for n, i in images.items() if i.complete}
        if name.value in done:
            name.value = unique_name(name.value, set(images))
        self.query_one(FindingList).show(preflight)
        self.query_one("#start", Button).disabled = preflight.blocked

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_start()
        elif event.button.id == "back":
            self.action_back()

    def action_start(self) -> None:
        disk = self.disk
        if disk is None:
            self.say("Choose the disk to save first (arrows, then Enter).")
            return
        if self.preflight is None:
            self.say("The checks are still running; the save can start when they finish.")
            return
        if self.preflight.blocked:
            self.say("The save cannot start: see the STOP line above.")
            return
        name = self.query_one(Input).value.strip()
        try:
            check_image_name(name)
        except ApplianceError as exc:
            self.say(exc)
            return
        existing = self.images.get(name)
        if existing is not None and existing.complete:
            self.say(f"An image named {name} already exists; choose another name.")
            return
        resume = existing is not None
        spec = self.session.backend.save_job(disk, self.preflight.repo, name, resume=resume)
        self.start_job(spec, writable=True, avoid=[disk.name])

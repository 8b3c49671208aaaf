"""Restore: pick an image, then the disk to overwrite; the engine plans and checks it, the
user reads what will be destroyed and types the disk's name."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Static

from appliance.disk.model import Disk
from appliance.jobs.catalog import ImageSummary
from tui.messages import ImagesLoaded, Planned
from tui.screens.flow import FlowScreen
from tui.session import Session
from tui.widgets.disktable import CHOOSE_TARGET, DiskTable
from tui.widgets.errorline import ErrorLine
from tui.widgets.imagetable import ImageTable, restorable
from tui.widgets.topbar import TopBar


class RestoreScreen(FlowScreen):
    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.image: ImageSummary | None = None
        self.repo: str | None = None

    def compose(self) -> ComposeResult:
        yield TopBar("Restore an image onto a disk", self.session)
        with VerticalScroll():
            yield Static("1. The image: arrows, then Enter", id="step1", classes="step")
            yield ImageTable(id="images")
            yield Static(
                "2. The disk to ERASE and restore onto: arrows, then Enter",
                id="step2",
                classes="step",
            )
            yield DiskTable(id="target", none_row=CHOOSE_TARGET, none_column=1)
            yield ErrorLine()
            yield Static(
                "Nothing is written until you type the disk's name on the next screen.",
                classes="hint",
            )
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(ImageTable).focus()
        self.load_images()

    @work(thread=True, exclusive=True, group="images", exit_on_error=False)
    def load_images(self) -> ImagesLoaded:
        session = self.session
        repo = session.prepare_repo(writable=False)
        return ImagesLoaded(repo, session.backend.images(repo))

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False)
    def make_plan(self, repo: str, image: str, target: Disk) -> Planned:
        return Planned(self.session.backend.plan_restore(repo, image, target.name))

    def on_images_loaded(self, message: ImagesLoaded) -> None:
        self.repo = message.repo
        self.query_one(ImageTable).show(message.images)
        if not message.images:
            self.say(f"The repository {self.repo} holds no images yet.")

    def on_planned(self, message: Planned) -> None:
        self.confirm_then_start(message.plan)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.unsay()
        if event.data_table.id == "images":
            image = self.query_one(ImageTable).current_image()
            if image is None:
                return
            if not restorable(image):
                why = image.problem or (
                    "its save did not finish, so it is never restored; "
                    "save again with the same name to resume it"
                )
                self.say(f"The image {image.name} cannot be restored: {why}")
                return
            self.image = image
            self.mark_step("step1", True)
            self.query_one(DiskTable).focus()
        elif event.data_table.id == "target":
            if self.image is None or self.repo is None:
                self.say("Choose the image first (arrows, then Enter).")
                self.query_one(ImageTable).focus()
                return
            disk = self.disk_or_say("target", "the disk to restore onto")
            if disk is not None:
                self.query_one(ErrorLine).note(f"Checking {disk.node}...")
                self.make_plan(self.repo, self.image.name, disk)

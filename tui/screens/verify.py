"""Verify: an image (every chunk re-hashed), or an image against a disk."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Static

from appliance.jobs.catalog import ImageSummary
from tui.jobspec import VerifyRequest
from tui.messages import ImagesLoaded
from tui.screens.flow import FlowScreen
from tui.session import Session
from tui.widgets.disktable import DiskTable
from tui.widgets.errorline import ErrorLine
from tui.widgets.imagetable import ImageTable, restorable
from tui.widgets.topbar import TopBar

ONLY_IMAGE = "Only the image: re-read and re-hash every chunk"


class VerifyScreen(FlowScreen):
    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.image: ImageSummary | None = None
        self.repo: str | None = None

    def compose(self) -> ComposeResult:
        yield TopBar("Verify an image", self.session)
        with VerticalScroll():
            yield Static("1. The image: arrows, then Enter", id="step1", classes="step")
            yield ImageTable(id="images")
            yield Static(
                "2. Check the image alone, or compare a disk with it: Enter starts",
                id="step2",
                classes="step",
            )
            yield DiskTable(id="against", none_row=ONLY_IMAGE)
            yield ErrorLine()
            yield Static("Verifying only reads: nothing is written anywhere.", classes="hint")
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

    def on_images_loaded(self, message: ImagesLoaded) -> None:
        self.repo = message.repo
        self.query_one(ImageTable).show(message.images)
        if not message.images:
            self.say(f"The repository {self.repo} holds no images yet.")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.unsay()
        if event.data_table.id == "images":
            image = self.query_one(ImageTable).current_image()
            if image is None:
                return
            if not restorable(image):
                self.say(
                    f"The image {image.name} is incomplete or damaged, so there is "
                    "nothing whole to verify; save it again."
                )
                return
            self.image = image
            self.mark_step("step1", True)
            self.query_one(DiskTable).focus()
            return
        if self.image is None or self.repo is None:
            self.say("Choose the image first (arrows, then Enter).")
            self.query_one(ImageTable).focus()
            return
        table = self.query_one(DiskTable)
        disk = None if table.none_selected() else table.current_disk()
        if disk is not None and not self.usable(disk):
            return
        request = VerifyRequest(self.repo, self.image.name, disk.name if disk else None)
        spec = self.session.backend.verify_job(request)
        self.start_job(spec, writable=False, avoid=[])

"""Room: one image to a room of PCs at once (multicast, udpcast).

Send: an image of the open repository, to N receivers, waiting up to S seconds for them;
the job screen then shows the receivers that joined, the bytes sent, the rate, the verdict
and Stop. Receive: the disk of THIS PC to erase with what a sender streams, confirmed exactly
as a restore is (the engine's guards first, then the disk's name typed)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Footer, Input, Label, Static

from appliance.disk.model import Disk
from tui.jobspec import WritePlan
from tui.messages import ImagesLoaded, Planned
from tui.screens.confirm import ConfirmScreen
from tui.screens.flow import FlowScreen
from tui.screens.job import JobScreen
from tui.session import Session
from tui.widgets.disktable import CHOOSE_TARGET, DiskTable
from tui.widgets.errorline import ErrorLine
from tui.widgets.imagetable import ImageTable, restorable
from tui.widgets.topbar import TopBar

MOST_RECEIVERS = 999
LONGEST_WAIT = 24 * 3600


class RoomScreen(FlowScreen):
    DEFAULT_CSS = """
    RoomScreen #counts { height: 3; margin-top: 1; }
    RoomScreen #counts Label { padding: 1 1 0 0; }
    RoomScreen #counts Input { width: 12; margin-right: 2; }
    """

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.repo: str | None = None

    def compose(self) -> ComposeResult:
        yield TopBar("A room of PCs: one image to many at once (multicast)", self.session)
        with VerticalScroll():
            yield Static(
                "Send: an image of the open repository (arrows, then Enter sends it)",
                id="step1",
                classes="step",
            )
            yield ImageTable(id="images")
            with Horizontal(id="counts"):
                yield Label("Receivers:")
                yield Input("1", id="receivers", type="integer", max_length=3)
                yield Label("Wait for them (s):")
                yield Input("600", id="wait", type="integer", max_length=5)
            yield Static(
                "Receive: the disk of THIS PC to ERASE with what a sender streams "
                "(arrows, then Enter)",
                id="step2",
                classes="step",
            )
            yield DiskTable(id="target", none_row=CHOOSE_TARGET, none_column=1)
            yield ErrorLine()
            yield Static(
                "The sender starts when all receivers came, or after the wait with those who "
                "did; a PC that comes later restores over HTTP. Nothing is written to a disk "
                "until you type its name.",
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

    def worker_failed(self, group: str) -> None:
        if group == "images":  # no repository: receiving still works
            self.query_one(DiskTable).focus()

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False)
    def make_plan(self, target: Disk) -> Planned:
        return Planned(self.session.backend.plan_receive(target.name))

    def on_images_loaded(self, message: ImagesLoaded) -> None:
        self.repo = message.repo
        self.query_one(ImageTable).show(message.images)
        if not message.images:
            self.say(f"The repository {self.repo} holds no images to send.")

    def _number(self, field: str, what: str, most: int) -> int | None:
        text = self.query_one(f"#{field}", Input).value.strip()
        if not text.isdigit() or not 1 <= int(text) <= most:
            self.say(f"{what} must be a whole number from 1 to {most}.")
            self.query_one(f"#{field}", Input).focus()
            return None
        return int(text)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.unsay()
        if event.data_table.id == "images":
            self._send()
        elif event.data_table.id == "target":
            disk = self.disk_or_say("target", "the disk to erase with the stream")
            if disk is not None:
                self.query_one(ErrorLine).note(f"Checking {disk.node}...")
                self.make_plan(disk)

    def _send(self) -> None:
        image = self.query_one(ImageTable).current_image()
        if image is None or self.repo is None:
            return
        if image.kind or not restorable(image):
            why = f"it is a {image.kind}" if image.kind else "it is incomplete or damaged"
            self.say(f"The image {image.name} cannot be sent: {why}.")
            return
        receivers = self._number("receivers", "Receivers", MOST_RECEIVERS)
        wait = self._number("wait", "The wait", LONGEST_WAIT)
        if receivers is None or wait is None:
            return
        self.mark_step("step1", True)
        spec = self.session.backend.cast_send_job(self.repo, image.name, receivers, wait)
        self.start_job(spec, writable=False, avoid=[])

    def on_planned(self, message: Planned) -> None:
        self.unsay()
        plan: WritePlan = message.plan

        def answered(yes: bool | None) -> None:
            if not yes:
                self.say(f"Nothing was written to {plan.target.node}.")
                return
            spec = self.session.backend.receive_job(plan)
            self.app.switch_screen(JobScreen(self.session, spec))  # no repository needed

        self.app.push_screen(ConfirmScreen(plan, blink=self.session.blink), answered)

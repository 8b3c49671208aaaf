"""Restore: pick an image, then the disk to overwrite; the engine plans and checks it, the
user reads what will be destroyed and types the disk's name.

Several disks at once (a shop duplicating sticks, a lab cart): M marks or unmarks disks (then
Enter does too), W restores onto the marked ones; every disk is confirmed on its own (its name
typed) and one read of the image writes them all (appliance.jobs.multirestore)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Static

from appliance.disk.model import Disk
from appliance.disk.probe import Scan
from appliance.jobs.catalog import ImageSummary
from tui.jobspec import WritePlan
from tui.messages import ImagesLoaded, Planned, RestoresPlanned
from tui.screens.browse import BrowseScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.flow import FlowScreen
from tui.session import Session
from tui.widgets.disktable import CHOOSE_TARGET, DiskTable
from tui.widgets.errorline import ErrorLine
from tui.widgets.imagetable import ImageTable, restorable
from tui.widgets.topbar import TopBar

CHOSEN = "RESTORE"  # the note a marked disk gets in the table


class RestoreScreen(FlowScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        *FlowScreen.BINDINGS,
        Binding("m", "mark", "Mark disk (several)"),
        Binding("w", "restore_marked", "Restore onto marked"),
        Binding("b", "browse", "Browse files"),
    ]

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.image: ImageSummary | None = None
        self.repo: str | None = None
        self.chosen: list[str] = []  # kernel names marked for a restore onto several disks

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
            yield Static("", id="chosen")
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
            if self.chosen:  # marking several: Enter marks too
                self.action_mark()
                return
            disk = self.disk_or_say("target", "the disk to restore onto")
            if disk is not None:
                self.query_one(ErrorLine).note(f"Checking {disk.node}...")
                self.make_plan(self.repo, self.image.name, disk)

    def action_browse(self) -> None:
        """The highlighted image's files (copy some out instead of restoring it)."""
        image = self.query_one(ImageTable).current_image()
        self.app.push_screen(BrowseScreen(self.session, image.name if image else None))

    # -- several disks at once ----------------------------------------------------------
    def disks_changed(self, scan: Scan) -> None:
        present = {d.name for d in scan.disks}
        self.chosen = [name for name in self.chosen if name in present]  # unplugged: dropped
        notes = self.session.disk_notes(scan)
        notes.update({name: CHOSEN for name in self.chosen})
        for table in self.query(DiskTable):
            table.show(scan.disks, self.session.backend.labels, notes)
        words = ", ".join(f"/dev/{name}" for name in self.chosen)
        self.query_one("#chosen", Static).update(
            f"Marked to be erased: {words}; W restores onto them" if words else ""
        )

    def action_mark(self) -> None:
        self.unsay()
        disk = self.query_one(DiskTable).current_disk()
        if disk is None:
            self.say("Choose a disk (arrows), then M marks it.")
            return
        if not self.usable(disk):
            return
        if disk.name in self.chosen:
            self.chosen.remove(disk.name)
        else:
            self.chosen.append(disk.name)
        self.disks_changed(self.session.disks)

    def action_restore_marked(self) -> None:
        if self.image is None or self.repo is None:
            self.say("Choose the image first (arrows, then Enter).")
            self.query_one(ImageTable).focus()
            return
        if not self.chosen:
            self.say("Mark the disks to restore onto with M first.")
            return
        self.query_one(ErrorLine).note(f"Checking {len(self.chosen)} disk(s)...")
        self.make_plans(self.repo, self.image.name, list(self.chosen))

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False)
    def make_plans(self, repo: str, image: str, targets: list[str]) -> RestoresPlanned:
        return RestoresPlanned(self.session.backend.plan_restores(repo, image, targets))

    def on_restores_planned(self, message: RestoresPlanned) -> None:
        self.unsay()
        self._confirm(message.plans, [])

    def _confirm(self, plans: Sequence[WritePlan], confirmed: list[WritePlan]) -> None:
        """One confirmation per disk, each its name typed; a disk refused stops them all."""
        if len(confirmed) == len(plans):
            spec = self.session.backend.restores_job(confirmed)
            self.start_job(spec, writable=False, avoid=[p.target.name for p in confirmed])
            return
        plan = plans[len(confirmed)]

        def answered(yes: bool | None) -> None:
            if not yes:
                names = ", ".join(p.target.node for p in plans)
                self.say(f"Nothing was written to {names}.")
                return
            self._confirm(plans, [*confirmed, plan])

        self.app.push_screen(ConfirmScreen(plan, blink=self.session.blink), answered)

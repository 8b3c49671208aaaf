"""What the job screens (save, restore, clone, verify, repository) share: the top bar, Esc to
go back, the live disk list, an error line, and starting a job."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from appliance.disk.model import Disk
from appliance.disk.probe import Scan
from appliance.plan.safety import boot_stick_refusal
from tui.jobspec import JobSpec, WritePlan
from tui.messages import WorkerResult
from tui.screens.confirm import ConfirmScreen
from tui.screens.job import JobScreen
from tui.session import Session
from tui.widgets.disktable import DiskTable
from tui.widgets.errorline import ErrorLine


class FlowScreen(Screen[None]):
    """A screen where the user picks what a job works on, step by step."""

    DEFAULT_CSS = """
    FlowScreen VerticalScroll { padding: 0 1; }
    FlowScreen .step { height: 1; text-style: bold; color: $secondary; margin-top: 1; }
    FlowScreen .step.-done { color: $text-muted; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

    def on_mount(self) -> None:
        self.session.disks_changed.subscribe(self, self.disks_changed)
        self.disks_changed(self.session.disks)

    def disks_changed(self, scan: Scan) -> None:
        """Refill every disk table of the screen (disks come and go while it is open)."""
        session = self.session
        notes = session.disk_notes(scan)
        for table in self.query(DiskTable):
            table.show(scan.disks, session.backend.labels, notes)

    def action_back(self) -> None:
        self.app.pop_screen()

    # -- errors --------------------------------------------------------------------------
    def say(self, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else self.session.sentence(error)
        self.query_one(ErrorLine).say(text)

    def unsay(self) -> None:
        self.query_one(ErrorLine).clear()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker of this screen ended: post its result (a WorkerResult message) to the
        screen's handler for it, or show its sentence."""
        if event.state == WorkerState.SUCCESS and isinstance(event.worker.result, WorkerResult):
            self.post_message(event.worker.result)
        elif event.state == WorkerState.ERROR and event.worker.error is not None:
            self.say(event.worker.error)
            self.worker_failed(event.worker.group)

    def worker_failed(self, group: str) -> None:
        """What else to show when the worker of `group` failed (its sentence is shown)."""

    # -- helpers -----------------------------------------------------------------------
    def usable(self, disk: Disk) -> bool:
        """Whether a job may read or write `disk`: never the stick the appliance booted from
        (its sentence is shown; appliance.plan.safety refuses it again in the job)."""
        if disk.boot_stick:
            self.say(boot_stick_refusal(disk))
            return False
        return True

    def disk_or_say(self, table_id: str, what: str) -> Disk | None:
        disk = self.query_one(f"#{table_id}", DiskTable).current_disk()
        if disk is None:
            self.say(f"Choose {what} first (arrows, then Enter).")
            return None
        return disk if self.usable(disk) else None

    def start_job(self, spec: JobSpec, *, writable: bool, avoid: Sequence[str]) -> None:
        """Replace this screen with the job's screen (Home stays underneath)."""
        session = self.session

        def prepare() -> str:
            return session.prepare_repo(writable=writable, avoid=avoid)

        self.app.switch_screen(JobScreen(session, spec, prepare))

    def confirm_then_start(self, plan: WritePlan, avoid: Sequence[str] = ()) -> None:
        """Ask for the target's name (ConfirmScreen); start the job only if it was typed."""

        def answered(yes: bool | None) -> None:
            if not yes:
                self.say(f"Nothing was written to {plan.target.node}.")
                return
            spec = self.session.backend.write_job(plan)
            self.start_job(spec, writable=False, avoid=[plan.target.name, *avoid])

        self.app.push_screen(ConfirmScreen(plan, blink=self.session.blink), answered)

    def mark_step(self, step_id: str, done: bool) -> None:
        self.query_one(f"#{step_id}").set_class(done, "-done")


Prepare = Callable[[], str]

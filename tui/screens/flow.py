"""What the job screens (save, restore, clone, verify, repository) share: the top bar, Esc to
go back, the live disk list, an error line, and starting a job."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from appliance.devices import Scan
from appliance.model import Disk
from tui.jobspec import JobSpec
from tui.widgets.disktable import DiskTable
from tui.widgets.errorline import ErrorLine

if TYPE_CHECKING:
    from tui.app import ApplianceApp
    from tui.jobspec import WritePlan


class FlowScreen(Screen[None]):
    """A screen where the user picks what a job works on, step by step."""

    DEFAULT_CSS = """
    FlowScreen VerticalScroll { padding: 0 1; }
    FlowScreen .step { height: 1; text-style: bold; color: $secondary; margin-top: 1; }
    FlowScreen .step.-done { color: $text-muted; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]

    @property
    def appliance(self) -> ApplianceApp:
        return self.app  # type: ignore[return-value]

    def on_mount(self) -> None:
        self.appliance.disks_changed.subscribe(self, self.disks_changed)
        self.disks_changed(self.appliance.disks)

    def disks_changed(self, scan: Scan) -> None:
        """Refill every disk table of the screen (disks come and go while it is open)."""
        app = self.appliance
        notes = app.disk_notes(scan)
        for table in self.query(DiskTable):
            table.show(scan.disks, app.backend.labels, notes)

    def action_back(self) -> None:
        self.app.pop_screen()

    # -- errors --------------------------------------------------------------------------
    def say(self, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else self.appliance.sentence(error)
        self.query_one(ErrorLine).say(text)

    def unsay(self) -> None:
        self.query_one(ErrorLine).clear()

    def worker_failed(self, event: Worker.StateChanged) -> bool:
        """Show a failed worker's sentence; True when it failed."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.say(event.worker.error)
            return True
        return False

    # -- helpers -----------------------------------------------------------------------
    def disk_or_say(self, table_id: str, what: str) -> Disk | None:
        disk = self.query_one(f"#{table_id}", DiskTable).current_disk()
        if disk is None:
            self.say(f"Choose {what} first (arrows, then Enter).")
        return disk

    def start_job(self, spec: JobSpec, *, writable: bool, avoid: Sequence[str]) -> None:
        """Replace this screen with the job's screen (Home stays underneath)."""
        from tui.screens.job import JobScreen

        app = self.appliance

        def prepare() -> str:
            return app.prepare_repo(writable=writable, avoid=avoid)

        self.app.switch_screen(JobScreen(spec, prepare))

    def confirm_then_start(self, plan: WritePlan, avoid: Sequence[str] = ()) -> None:
        """Ask for the target's name (ConfirmScreen); start the job only if it was typed."""
        from tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if not yes:
                self.say(f"Nothing was written to {plan.target.node}.")
                return
            spec = self.appliance.backend.write_job(plan)
            self.start_job(spec, writable=False, avoid=[plan.target.name, *avoid])

        self.app.push_screen(ConfirmScreen(plan), answered)

    def mark_step(self, step_id: str, done: bool) -> None:
        self.query_one(f"#{step_id}").set_class(done, "-done")


Prepare = Callable[[], str]

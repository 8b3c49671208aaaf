"""The Textual app: it owns the session (tui/session.py) and the disk watcher, opens the home
screen, and acts on what the screens ask with messages (tui/messages.py): scan the disks, a
job started or finished, restart or power off. It is the one place where errors that reach
it become sentences; screens import it never."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.filter import LineFilter
from textual.screen import Screen
from textual.signal import Signal
from textual.worker import Worker, WorkerState

from appliance.disk.probe import Scan
from appliance.logsetup import report_internal_error
from tui.backend import Backend
from tui.hotplug import DiskWatcher
from tui.look import APPLIANCE_THEME, CONSOLE_THEME, AsciiFilter, Look, key_label
from tui.messages import (
    EXIT_POWEROFF,
    EXIT_REBOOT,
    DisksChanged,
    JobFinished,
    JobStarted,
    PowerRequest,
)
from tui.screens.home import HomeScreen
from tui.session import Session

__all__ = ["EXIT_POWEROFF", "EXIT_REBOOT", "ApplianceApp", "DisksChanged"]


CSS = """
.title { text-style: bold; color: $accent; height: 1; }
.hint { color: $text-muted; height: auto; }
.section { height: 1; text-style: bold; color: $secondary; margin-top: 1; }
DataTable { height: auto; max-height: 12; background: $surface; }
DataTable:focus { background-tint: $foreground 3%; }
.buttons { height: 1; margin-top: 1; }
.buttons Button { margin-right: 2; width: auto; min-width: 8; }
Toast.-error { border-left: thick $error; }
Toast.-warning { border-left: thick $warning; }
Toast.-information { border-left: thick $success; }
"""


class ApplianceApp(App[int]):
    TITLE = "Disk imaging appliance"
    ENABLE_COMMAND_PALETTE = False
    CSS = CSS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True)
    ]

    def __init__(
        self,
        backend: Backend,
        *,
        look: Look | None = None,
        repo: str | None = None,
        demo: bool = False,
        watch: bool = True,
        log_path: str = "",
        blink: bool = True,
    ) -> None:
        self.look = look or Look(ascii=False, console=False)
        super().__init__(ansi_color=self.look.console)
        disks_changed: Signal[Scan] = Signal(self, "disks-changed")
        usage_changed: Signal[str] = Signal(self, "usage-changed")
        repo_changed: Signal[str | None] = Signal(self, "repo-changed")
        self.session = Session(
            backend,
            repo=repo,
            demo=demo,
            log_path=log_path,
            blink=blink,
            disks_changed=disks_changed,
            usage_changed=usage_changed,
            repo_changed=repo_changed,
        )
        self._watch = watch
        self._watcher: DiskWatcher | None = None
        self._ascii = AsciiFilter()
        self.register_theme(APPLIANCE_THEME)
        self.register_theme(CONSOLE_THEME)
        self.theme = self.look.theme

    # -- look --------------------------------------------------------------------------
    def get_line_filters(self) -> Sequence[LineFilter]:
        filters = list(super().get_line_filters())
        return [*filters, self._ascii] if self.look.ascii else filters

    def get_key_display(self, binding: Binding) -> str:
        if binding.key_display:
            return binding.key_display
        return key_label(binding.key)

    def get_default_screen(self) -> Screen[Any]:
        return HomeScreen(self.session)

    # -- lifecycle -----------------------------------------------------------------------
    def on_mount(self) -> None:
        self.refresh_disks()
        self.session.refresh_repo()
        if self._watch:
            self._watcher = DiskWatcher(self._heard_disks)
            self._watcher.start()

    def _heard_disks(self) -> None:
        self.post_message(DisksChanged())  # from the watcher's thread: post_message is safe

    def on_disks_changed(self, _: DisksChanged) -> None:
        self.refresh_disks()

    def on_unmount(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        self.session.release_repo()

    async def action_quit(self) -> None:
        if self.session.job_running:
            self.notify("A job is running: stop it first (Esc), then quit.", severity="warning")
            return
        self.exit(0)

    def on_power_request(self, message: PowerRequest) -> None:
        """Leave the app asking the system to restart (80) or power off (81)."""
        if self.session.job_running:
            self.notify("A job is running: stop it first.", severity="warning")
            return
        self.exit(message.code, return_code=message.code)

    # -- errors ------------------------------------------------------------------------
    def show_error(self, error: BaseException) -> str:
        text = self.session.sentence(error)
        self.notify(text, severity="error", timeout=10)
        return text

    def _handle_exception(self, error: Exception) -> None:
        # A bug in a screen: keep Textual's exit (the state may be broken), but log the
        # traceback and leave one sentence on the terminal instead of the traceback.
        sentence = report_internal_error(error, "the interface", "tui")
        super()._handle_exception(error)
        self._exit_renderables[:] = [sentence]

    # -- disks -------------------------------------------------------------------------
    def refresh_disks(self) -> None:
        if self.session.job_running:
            return
        self.run_worker(
            self.session.scan, thread=True, group="scan", exclusive=True, exit_on_error=False
        )

    def _measure(self) -> None:
        session = self.session

        def measured(name: str) -> None:
            self.call_from_thread(session.usage_changed.publish, name)

        session.measure(session.disks.disks, measured)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "scan" and event.state == WorkerState.SUCCESS:
            assert isinstance(worker.result, Scan)
            self.session.set_disks(worker.result)
            self.run_worker(
                self._measure, thread=True, group="usage", exclusive=True, exit_on_error=False
            )
        elif worker.group in ("scan", "usage", "repo") and event.state == WorkerState.ERROR:
            assert worker.error is not None
            self.show_error(worker.error)

    # -- jobs --------------------------------------------------------------------------
    def on_job_started(self, _: JobStarted) -> None:
        # The screen has marked the session busy already; the watcher would only wake us.
        if self._watcher is not None:
            self._watcher.pause()

    def on_job_finished(self, _: JobFinished) -> None:
        if self._watcher is not None:
            self._watcher.resume()
        self.refresh_disks()
        self.session.refresh_repo()
        mount = self.session.mount_to_make_readonly()
        if mount is not None:
            self.run_worker(
                lambda: mount.ensure(False), thread=True, group="repo", exit_on_error=False
            )

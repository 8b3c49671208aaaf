"""The Textual app: the state every screen shares (disks, repository, the running job) and the
one place where errors become sentences."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.filter import LineFilter
from textual.message import Message
from textual.screen import Screen
from textual.signal import Signal
from textual.worker import Worker, WorkerState

from appliance.devices import Scan
from appliance.errors import ApplianceError
from appliance.model import Disk
from appliance.preflight import Usage
from appliance.repomount import RepoMount, check_not_on
from tui.backend import Backend
from tui.hotplug import DiskWatcher
from tui.look import APPLIANCE_THEME, CONSOLE_THEME, AsciiFilter, Look, key_label

log = logging.getLogger("tui")

EXIT_REBOOT = 80
EXIT_POWEROFF = 81

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


@dataclass
class RepoState:
    """The repository in use: a folder, possibly on a filesystem the app mounted."""

    path: str | None = None
    mount: RepoMount | None = None
    free: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class DisksChanged(Message):
    """The disk watcher saw something change (posted from its thread)."""


class ApplianceApp(App[int]):
    TITLE = "Disk imaging appliance"
    ENABLE_COMMAND_PALETTE = False
    CSS = CSS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True)]

    def __init__(self, backend: Backend, *, look: Look | None = None, repo: str | None = None,
                 demo: bool = False, watch: bool = True, log_path: str = "",
                 blink: bool = True) -> None:
        self.look = look or Look(ascii=False, console=False)
        super().__init__(ansi_color=self.look.console)
        self.backend = backend
        self.demo = demo
        self.log_path = log_path or "the log"
        self.blink = blink
        self.repo = RepoState(path=repo)
        self.disks: Scan = Scan((), ())
        self.usage: dict[tuple[Any, ...], list[Usage]] = {}
        self.whole_fs: dict[str, str] = {}  # disk name -> a filesystem on the whole disk
        self.job_running = False
        self.disks_changed: Signal[Scan] = Signal(self, "disks-changed")
        self.usage_changed: Signal[str] = Signal(self, "usage-changed")
        self.repo_changed: Signal[str | None] = Signal(self, "repo-changed")
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
        from tui.screens.home import HomeScreen

        return HomeScreen()

    # -- lifecycle -----------------------------------------------------------------------
    def on_mount(self) -> None:
        self.refresh_disks()
        self.refresh_repo()
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
        self.release_repo()

    async def action_quit(self) -> None:
        if self.job_running:
            self.notify("A job is running: stop it first (Esc), then quit.", severity="warning")
            return
        self.exit(0)

    def power(self, code: int) -> None:
        """Leave the app asking the system to restart (80) or power off (81)."""
        if self.job_running:
            self.notify("A job is running: stop it first.", severity="warning")
            return
        self.exit(code, return_code=code)

    # -- errors ------------------------------------------------------------------------
    def sentence(self, error: BaseException) -> str:
        """One sentence for people; anything that is not an ApplianceError is logged whole."""
        if isinstance(error, ApplianceError):
            log.info("%s", error)
            return str(error)
        log.error("internal error", exc_info=error)
        return f"An internal error stopped this; the details are in {self.log_path}."

    def show_error(self, error: BaseException) -> str:
        text = self.sentence(error)
        self.notify(text, severity="error", timeout=10)
        return text

    def _handle_exception(self, error: Exception) -> None:
        # A bug in a screen: keep Textual's exit (the state may be broken), but log the
        # traceback and leave one sentence on the terminal instead of the traceback.
        log.error("unhandled error in the interface", exc_info=error)
        super()._handle_exception(error)
        self._exit_renderables[:] = [
            f"The appliance's interface stopped on an internal error; the details are in "
            f"{self.log_path}."]

    # -- disks -------------------------------------------------------------------------
    def refresh_disks(self) -> None:
        if self.job_running:
            return
        self.run_worker(self._scan, thread=True, group="scan", exclusive=True,
                        exit_on_error=False)

    def _scan(self) -> Scan:
        scan = self.backend.scan()
        whole: dict[str, str] = {}
        for disk in scan.disks:
            if disk.table is None and not disk.partitions:
                try:
                    found = self.backend.whole_filesystem(disk)
                except ApplianceError as exc:
                    log.info("cannot probe %s: %s", disk.node, exc)
                    found = None
                if found:
                    whole[disk.name] = found
        self.whole_fs = whole
        return scan

    def disk_notes(self, scan: Scan) -> dict[str, str]:
        """What the Note column says of a disk: it holds the repository, or a filesystem
        on the whole disk (no partition table), which is not an empty disk."""
        repo = self.repo_disks()
        notes = {d.name: f"{self.whole_fs[d.name].split(' ')[0]}, no table"
                 for d in scan.disks if d.name in self.whole_fs}
        notes.update({d.name: "repository" for d in scan.disks if d.name in repo})
        return notes

    @staticmethod
    def usage_key(disk: Disk) -> tuple[Any, ...]:
        return (disk.name, disk.size, disk.table_id,
                tuple((p.number, p.start, p.size, p.fstype, p.uuid) for p in disk.partitions))

    def _measure(self, disks: tuple[Disk, ...]) -> None:
        for disk in disks:
            if self.job_running:
                return
            key = self.usage_key(disk)
            if key in self.usage:
                continue
            try:
                self.usage[key] = self.backend.measure(disk)
            except ApplianceError as exc:
                log.info("cannot measure %s: %s", disk.node, exc)
                self.usage[key] = []
            try:
                self.call_from_thread(self.usage_changed.publish, disk.name)
            except RuntimeError:  # the app is closing
                return

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "scan" and event.state == WorkerState.SUCCESS:
            assert isinstance(worker.result, Scan)
            self.disks = worker.result
            self.disks_changed.publish(self.disks)
            self.run_worker(lambda: self._measure(self.disks.disks), thread=True,
                            group="usage", exclusive=True, exit_on_error=False)
        elif worker.group in ("scan", "usage", "repo") and event.state == WorkerState.ERROR:
            assert worker.error is not None
            self.show_error(worker.error)

    def usage_of(self, disk: Disk) -> list[Usage] | None:
        return self.usage.get(self.usage_key(disk))

    def disk(self, name: str) -> Disk | None:
        return next((d for d in self.disks.disks if d.name == name), None)

    def label(self, disk: Disk) -> str:
        return self.backend.labels.get(disk.name, "")

    # -- the repository ----------------------------------------------------------------
    def refresh_repo(self) -> None:
        path = self.repo.path
        self.repo.free = self.backend.free(path) if path else None
        self.repo_changed.publish(path)

    def set_repo(self, path: str | None, mount: RepoMount | None = None) -> None:
        with self.repo.lock:
            old = self.repo.mount
            if old is not None and (mount is None or old.mountpoint != mount.mountpoint):
                try:
                    old.unmount()
                except ApplianceError as exc:
                    self.show_error(exc)
            self.repo.path = path
            self.repo.mount = mount
        self.refresh_repo()

    def prepare_repo(self, *, writable: bool, avoid: Sequence[str] = ()) -> str:
        """Make the repository ready for a job (runs in a worker thread): mounted read-write
        for a save, read-only otherwise, and never on the job's own disks."""
        with self.repo.lock:
            path = self.repo.path
            if not path:
                raise ApplianceError("No repository is chosen yet: press P on the home screen "
                                     "to choose one.")
            mount = self.repo.mount
            if mount is not None:
                check_not_on(mount.node, avoid, "saves or overwrites")
                mount.ensure(writable)
        return path

    def release_repo(self) -> None:
        mount = self.repo.mount
        if mount is not None:
            try:
                mount.unmount()
            except ApplianceError as exc:
                log.warning("%s", exc)

    # -- jobs --------------------------------------------------------------------------
    def job_started(self) -> None:
        self.job_running = True
        if self._watcher is not None:
            self._watcher.pause()

    def job_finished(self) -> None:
        self.job_running = False
        self.usage.clear()
        if self._watcher is not None:
            self._watcher.resume()
        self.refresh_disks()
        self.refresh_repo()
        mount = self.repo.mount
        if mount is not None and mount.owned and mount.writable:
            self.run_worker(lambda: mount.ensure(False), thread=True, group="repo",
                            exit_on_error=False)

    def repo_disks(self) -> set[str]:
        """Kernel names of the disks that hold the repository in use."""
        return self.backend.repo_disks(self.repo.path) if self.repo.path else set()

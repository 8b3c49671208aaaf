"""What every screen of the interface shares, with no Textual in it: the disks and their used
space, the repository in use (and the filesystem the appliance mounted for it), whether a job
runs, and the Backend that does the work.

The app makes one Session and hands it to each screen it opens. A screen reads the session and
asks it for repository preparation; it tells the app about anything else with a message
(tui/messages.py). Changes are announced on three channels (disks, used space, repository)
that the app wires to Textual signals, so a screen or a widget redraws when they change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from appliance.disk.model import Disk
from appliance.disk.probe import Scan
from appliance.errors import ApplianceError
from appliance.logsetup import report_internal_error
from appliance.plan.preflight import Usage
from appliance.repo.mount import RepoMount, check_not_on
from appliance.repo.netmount import HeldMount
from appliance.repo.places import is_web_address
from appliance.repo.repository import (
    MARKER,
    Repository,
    check_writable,
    local_folder,
    open_store,
    storage_error,
)
from tui.backend import Backend

log = logging.getLogger("tui")

T = TypeVar("T")

UsageKey = tuple[Any, ...]


def is_address(path: str) -> bool:
    """The repository is at a web server's or a bucket's address, not in a folder here."""
    return local_folder(path) is None


class Channel(Protocol[T]):
    """Where a change is announced: subscribers are called with the new value.

    The app passes Textual signals (they drop subscribers that left the screen and call them
    on the app's thread); `Listeners` is the plain one for a session used without the app.
    """

    def subscribe(self, node: Any, callback: Callable[[T], Any]) -> None: ...

    def publish(self, data: T) -> None: ...


class Listeners(Generic[T]):
    """A channel that calls every subscriber at once, in order."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[T], Any]] = []

    def subscribe(self, node: Any, callback: Callable[[T], Any]) -> None:
        self.callbacks.append(callback)

    def publish(self, data: T) -> None:
        for callback in list(self.callbacks):
            callback(data)


@dataclass
class RepoState:
    """The repository in use: a folder, possibly on a filesystem the app mounted."""

    path: str | None = None
    mount: RepoMount | None = None
    net: HeldMount | None = None  # a file server's share, mounted while it is chosen
    free: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Session:
    """The interface's state. Methods that talk to disks (`scan`, `measure`, `prepare_repo`)
    run in worker threads; the others on the app's thread."""

    def __init__(
        self,
        backend: Backend,
        *,
        repo: str | None = None,
        demo: bool = False,
        log_path: str = "",
        blink: bool = True,
        disks_changed: Channel[Scan] | None = None,
        usage_changed: Channel[str] | None = None,
        repo_changed: Channel[str | None] | None = None,
    ) -> None:
        self.backend = backend
        self.demo = demo
        self.log_path = log_path or "the log"
        self.blink = blink
        self.repo = RepoState(path=repo)
        self.disks: Scan = Scan((), ())
        self.usage: dict[UsageKey, list[Usage]] = {}
        self.whole_fs: dict[str, str] = {}  # disk name -> a filesystem on the whole disk
        self.job_running = False
        self.disks_changed: Channel[Scan] = disks_changed or Listeners()
        self.usage_changed: Channel[str] = usage_changed or Listeners()
        self.repo_changed: Channel[str | None] = repo_changed or Listeners()
        self.clock: Callable[[], float] = time.monotonic  # a job's elapsed time (scenes freeze it)

    # -- errors ------------------------------------------------------------------------
    def sentence(self, error: BaseException) -> str:
        """One sentence for people; anything that is not an ApplianceError is logged whole."""
        if isinstance(error, ApplianceError):
            log.info("%s", error)
            return str(error)
        return report_internal_error(error, "this", "tui")

    # -- disks -------------------------------------------------------------------------
    def scan(self) -> Scan:
        """List the disks, and probe the ones with no table for a whole-disk filesystem
        (in a worker thread; `set_disks` keeps the result)."""
        scan = self.backend.scan()
        whole: dict[str, str] = {}
        for disk in scan.disks:
            if disk.table is None and not disk.partitions and not disk.boot_stick:
                try:
                    found = self.backend.whole_filesystem(disk)
                except ApplianceError as exc:
                    log.info("cannot probe %s: %s", disk.node, exc)
                    found = None
                if found:
                    whole[disk.name] = found
        self.whole_fs = whole
        return scan

    def set_disks(self, scan: Scan) -> None:
        self.disks = scan
        self.disks_changed.publish(scan)

    def measure(self, disks: Sequence[Disk], measured: Callable[[str], None]) -> None:
        """Measure the used space of each disk not measured yet (in a worker thread), calling
        `measured(name)` after each; stop when a job starts."""
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
                measured(disk.name)
            except RuntimeError:  # the app is closing
                return

    @staticmethod
    def usage_key(disk: Disk) -> UsageKey:
        return (
            disk.name,
            disk.size,
            disk.table_id,
            tuple((p.number, p.start, p.size, p.fstype, p.uuid) for p in disk.partitions),
        )

    def usage_of(self, disk: Disk) -> list[Usage] | None:
        return self.usage.get(self.usage_key(disk))

    def disk(self, name: str) -> Disk | None:
        return next((d for d in self.disks.disks if d.name == name), None)

    def label(self, disk: Disk) -> str:
        return self.backend.labels.get(disk.name, "")

    def disk_notes(self, scan: Scan) -> dict[str, str]:
        """What the Note column says of a disk: it holds the repository, or a filesystem
        on the whole disk (no partition table), which is not an empty disk."""
        repo = self.repo_disks()
        notes = {
            d.name: f"{self.whole_fs[d.name].split(' ')[0]}, no table"
            for d in scan.disks
            if d.name in self.whole_fs
        }
        notes.update({d.name: "INCOMPLETE" for d in scan.disks if d.incomplete})
        notes.update({d.name: "repository" for d in scan.disks if d.name in repo})
        return notes

    # -- the repository ----------------------------------------------------------------
    def refresh_repo(self) -> None:
        path = self.repo.path
        self.repo.free = self.backend.free(path) if path and not is_address(path) else None
        self.repo_changed.publish(path)

    def open_address(self, location: str) -> bool:
        """Check a web server's or a bucket's repository before it is used (in a worker
        thread): True when a repository is there, False for a bucket without one yet (the
        first save makes it); a sentence when it cannot be reached, or when a web server
        (read-only) holds no repository."""
        if is_web_address(location):
            Repository.open(location)
            return True
        store = open_store(location)  # a bucket: reached with the AWS settings, or a sentence
        try:
            return store.exists(MARKER)
        except OSError as exc:
            raise storage_error(location, exc) from exc

    def set_repo(
        self, path: str | None, mount: RepoMount | None = None, net: HeldMount | None = None
    ) -> ApplianceError | None:
        """Use another repository; unmount the filesystem (or share) the appliance mounted
        for the old one. Returns the error of that unmount, if any (the new repository is
        used anyway)."""
        failed: ApplianceError | None = None
        with self.repo.lock:
            old = self.repo.mount
            if old is not None and (mount is None or old.mountpoint != mount.mountpoint):
                try:
                    old.unmount()
                except ApplianceError as exc:
                    failed = exc
            if self.repo.net is not None and self.repo.net is not net:
                self.repo.net.close()
            self.repo.path = path
            self.repo.mount = mount
            self.repo.net = net
        self.refresh_repo()
        return failed

    def prepare_repo(self, *, writable: bool, avoid: Sequence[str] = ()) -> str:
        """Make the repository ready for a job (runs in a worker thread): mounted read-write
        for a save, read-only otherwise, and never on the job's own disks."""
        with self.repo.lock:
            path = self.repo.path
            if not path:
                raise ApplianceError(
                    "No repository is chosen yet: press P on the home screen to choose one."
                )
            mount = self.repo.mount
            if mount is not None:
                check_not_on(mount.node, avoid, "saves or overwrites")
                mount.ensure(writable)
            if self.repo.net is not None and writable:
                self.repo.net.check_writable()
            if writable and is_address(path):
                check_writable(open_store(path), "a save")  # a web server: the sentence
        return path

    def release_repo(self) -> None:
        if self.repo.net is not None:
            self.repo.net.close()
            self.repo.net = None
        mount = self.repo.mount
        if mount is not None:
            try:
                mount.unmount()
            except ApplianceError as exc:
                log.warning("%s", exc)

    def repo_disks(self) -> set[str]:
        """Kernel names of the disks that hold the repository in use."""
        path = self.repo.path
        return self.backend.repo_disks(path) if path and not is_address(path) else set()

    # -- jobs --------------------------------------------------------------------------
    def job_started(self) -> None:
        """A job's screen calls it before the job runs: no scan or measure starts until
        `job_finished`, and running ones stop at their next disk."""
        self.job_running = True

    def job_finished(self) -> None:
        """The job ended: the used space it measured before is stale."""
        self.job_running = False
        self.usage.clear()

    def mount_to_make_readonly(self) -> RepoMount | None:
        """The repository's filesystem if the appliance mounted it read-write (for a save)."""
        mount = self.repo.mount
        return mount if mount is not None and mount.owned and mount.writable else None

"""The files of one partition of an image, mounted read-only: a tree with sizes and dates, a
search box, Space to select, C to copy the selection onto a folder of another disk.

The screen owns the mounts it needs (the image's partition, the destination's filesystem):
all of them are undone when it closes, on Esc, on an error and when the app quits."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Static
from textual.worker import Worker, WorkerState

from appliance.jobs.extract import where_of
from appliance.repo.mount import Volume
from tui.messages import WorkerResult
from tui.screens.browsedest import BrowseDestScreen
from tui.screens.job import JobScreen
from tui.session import Session
from tui.widgets.errorline import ErrorLine
from tui.widgets.filetree import FileTree
from tui.widgets.topbar import TopBar

log = logging.getLogger("tui")


class DestinationReady(WorkerResult):
    def __init__(self, dest: Path) -> None:
        super().__init__()
        self.dest = dest


class BrowseTreeScreen(Screen[None]):
    DEFAULT_CSS = """
    BrowseTreeScreen TopBar { background: $success-darken-2; }
    BrowseTreeScreen Vertical { padding: 0 1; }
    BrowseTreeScreen #search { margin-top: 1; }
    BrowseTreeScreen FileTree { height: 1fr; border: round $success; }
    BrowseTreeScreen #chosen { height: auto; color: $success; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("c", "copy_to", "Copy to..."),
        Binding("slash", "search", "Search", key_display="/"),
    ]

    def __init__(
        self,
        session: Session,
        repo: str,
        image: str,
        number: int,
        root: Path,
        stack: ExitStack,
    ) -> None:
        super().__init__()
        self.session = session
        self.where = where_of(repo, image)
        self.number = number
        self.root = root
        self.stack = stack  # the partition's mount, then the destination's

    def compose(self) -> ComposeResult:
        yield TopBar(
            f"Copy files (nothing on any disk is replaced): partition {self.number} of "
            f"{self.where.describe()}",
            self.session,
        )
        with Vertical():
            yield Input(placeholder="Search: part of a name, then Tab to the tree", id="search")
            yield FileTree(self.root, title=f"/ (partition {self.number})", id="files")
            yield Static("Nothing selected yet: Space selects files and folders.", id="chosen")
            yield ErrorLine()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(FileTree).focus()

    def on_unmount(self) -> None:
        self.release()

    def release(self) -> None:
        """Unmount the destination and the image's partition (every step, in reverse)."""
        try:
            self.stack.close()
        except Exception as exc:  # said, never raised into the UI: the screen is gone
            log.warning("unmount after browsing: %s", exc)
            self.app.notify(self.session.sentence(exc), severity="error", timeout=10)

    # -- the tree ----------------------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        tree = self.query_one(FileTree)
        tree.search = event.value.strip()
        tree.reload()

    def on_input_submitted(self, _: Input.Submitted) -> None:
        self.query_one(FileTree).focus()

    def on_file_tree_marked(self, _: FileTree.Marked) -> None:
        chosen = self.query_one(FileTree).chosen()
        text = (
            f"Selected ({len(chosen)}): {', '.join(chosen[:6])}"
            f"{' ...' if len(chosen) > 6 else ''}; C copies them to another disk."
            if chosen
            else "Nothing selected yet: Space selects files and folders."
        )
        self.query_one("#chosen", Static).update(text)

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_back(self) -> None:
        self.app.pop_screen()

    # -- copy ------------------------------------------------------------------------
    def action_copy_to(self) -> None:
        errors = self.query_one(ErrorLine)
        errors.clear()
        if not self.query_one(FileTree).chosen():
            errors.say("Select files or folders first: Space on each.")
            return
        avoid = self.session.repo_disks()

        def chosen(volume: Volume | None) -> None:
            if volume is not None:
                errors.note(f"Mounting {volume.node} to copy into...")
                self.mount_destination(volume)

        self.app.push_screen(BrowseDestScreen(self.session, avoid), chosen)

    @work(thread=True, exclusive=True, group="dest", exit_on_error=False)
    def mount_destination(self, volume: Volume) -> DestinationReady:
        mount = self.session.backend.mount_destination(volume.node)
        self.stack.callback(mount.unmount)
        name = Path(self.where.file).name if self.where.file else self.where.image
        return DestinationReady(mount.mountpoint / f"recovered-{name}")

    def on_destination_ready(self, message: DestinationReady) -> None:
        self.query_one(ErrorLine).clear()
        names = self.query_one(FileTree).chosen()
        spec = self.session.backend.copy_job(self.root, names, message.dest, self.where)
        self.app.push_screen(JobScreen(self.session, spec))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.SUCCESS and isinstance(event.worker.result, WorkerResult):
            self.post_message(event.worker.result)
        elif event.state == WorkerState.ERROR and event.worker.error is not None:
            self.query_one(ErrorLine).say(self.session.sentence(event.worker.error))

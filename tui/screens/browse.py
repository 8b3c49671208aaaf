"""Browse: get files back from an image. The image, then one of its partitions (those that
cannot be mounted are greyed, with their reason); the partition is mounted read-only and its
files shown (tui/screens/browsetree.py). Nothing here writes any disk."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Static

from appliance.jobs.extract import Choice
from appliance.units import human_size
from tui.messages import ImagesLoaded, WorkerResult
from tui.screens.browsetree import BrowseTreeScreen
from tui.screens.flow import FlowScreen
from tui.session import Session
from tui.widgets.errorline import ErrorLine
from tui.widgets.imagetable import ImageTable, restorable
from tui.widgets.topbar import TopBar

TITLE = "Browse an image's files (read-only; nothing on any disk is replaced)"


class PartitionsListed(WorkerResult):
    def __init__(self, image: str, choices: list[Choice]) -> None:
        super().__init__()
        self.image = image
        self.choices = choices


class PartitionOpened(WorkerResult):
    """A partition mounted read-only at `root`; `stack` unmounts it."""

    def __init__(self, number: int, root: Path, stack: ExitStack) -> None:
        super().__init__()
        self.number = number
        self.root = root
        self.stack = stack


class BrowseScreen(FlowScreen):
    DEFAULT_CSS = """
    BrowseScreen TopBar { background: $success-darken-2; }
    BrowseScreen #parts { height: auto; max-height: 12; }
    """

    def __init__(self, session: Session, image: str | None = None) -> None:
        super().__init__(session)
        self.wanted = image  # chosen on the Restore screen already
        self.image: str | None = None
        self.repo: str | None = None
        self.choices: dict[str, Choice] = {}

    def compose(self) -> ComposeResult:
        yield TopBar(TITLE, self.session)
        with VerticalScroll():
            yield Static("1. The image: arrows, then Enter", id="step1", classes="step")
            yield ImageTable(id="images")
            yield Static("2. The partition to look into: arrows, then Enter", id="step2",
                         classes="step")  # fmt: skip
            parts: DataTable[str | Text] = DataTable(id="parts", cursor_type="row")
            parts.add_columns("Partition", "Filesystem", "Size", "Label", "State")
            yield parts
            yield ErrorLine()
            yield Static(
                "The partition is mounted read-only: looking and copying files out never "
                "changes the image, and no disk is replaced.",
                classes="hint",
            )
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(ImageTable).focus()
        self.load_images()

    @work(thread=True, exclusive=True, group="images", exit_on_error=False)
    def load_images(self) -> ImagesLoaded:
        repo = self.session.prepare_repo(writable=False)
        return ImagesLoaded(repo, self.session.backend.images(repo))

    def on_images_loaded(self, message: ImagesLoaded) -> None:
        self.repo = message.repo
        table = self.query_one(ImageTable)
        table.show(message.images)
        if not message.images:
            self.say(f"The repository {self.repo} holds no images yet.")
        elif self.wanted in table.images:
            table.select_key(self.wanted)
            self._choose_image()

    @work(thread=True, exclusive=True, group="parts", exit_on_error=False)
    def list_partitions(self, repo: str, image: str) -> PartitionsListed:
        return PartitionsListed(image, self.session.backend.image_partitions(repo, image))

    def on_partitions_listed(self, message: PartitionsListed) -> None:
        self.unsay()
        self.image = message.image
        self.mark_step("step1", True)
        table: DataTable[str | Text] = self.query_one("#parts", DataTable)
        table.clear()
        self.choices = {}
        for choice in message.choices:
            key = str(choice.number)
            self.choices[key] = choice
            style = "" if choice.mountable else "dim"
            state = "can be browsed" if choice.mountable else (choice.reason or "cannot be mounted")
            table.add_row(
                Text(key, style=style),
                Text(choice.fstype or "-", style=style),
                Text(human_size(choice.size), style=style),
                Text(choice.label or "-", style=style),
                Text(state, style=style or "bold"),
                key=key,
            )
        table.focus()

    def _choose_image(self) -> None:
        image = self.query_one(ImageTable).current_image()
        if image is None or self.repo is None:
            return
        if not restorable(image):
            why = image.problem or "its save did not finish"
            self.say(f"The image {image.name} cannot be browsed: {why}.")
            return
        self.query_one(ErrorLine).note(f"Reading the partitions of {image.name}...")
        self.list_partitions(self.repo, image.name)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.unsay()
        if event.data_table.id == "images":
            self._choose_image()
            return
        if event.data_table.id != "parts" or self.image is None or self.repo is None:
            return
        choice = self.choices.get(str(event.row_key.value))
        if choice is None:
            return
        if not choice.mountable:
            why = (choice.reason or "it cannot be mounted").rstrip(".")
            self.say(f"Partition {choice.number} cannot be browsed: {why}.")
            return
        self.query_one(ErrorLine).note(f"Mounting partition {choice.number} read-only...")
        self.open_partition(self.repo, self.image, choice.number)

    @work(thread=True, exclusive=True, group="open", exit_on_error=False)
    def open_partition(self, repo: str, image: str, number: int) -> PartitionOpened:
        stack = ExitStack()
        try:
            root = stack.enter_context(self.session.backend.open_partition(repo, image, number))
        except BaseException:
            stack.close()
            raise
        return PartitionOpened(number, root, stack)

    def on_partition_opened(self, message: PartitionOpened) -> None:
        self.unsay()
        if self.repo is None or self.image is None or not self.is_attached:
            message.stack.close()
            return
        self.app.push_screen(
            BrowseTreeScreen(
                self.session, self.repo, self.image, message.number, message.root, message.stack
            )
        )

"""A yes/no question whose default (Enter, Esc) is always the harmless answer."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class AskScreen(ModalScreen[bool]):
    """Dismisses with True only on the "yes" button or its key; Enter and Esc say no."""

    DEFAULT_CSS = """
    AskScreen { align: center middle; }
    AskScreen #dialog {
        width: 64; max-width: 100%; height: auto; border: round $warning;
        padding: 0 1; background: $surface;
    }
    AskScreen #question { height: auto; margin-bottom: 1; }
    AskScreen Horizontal { height: 1; }
    AskScreen Button { margin-right: 2; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, title: str, question: str, *, yes: str, no: str) -> None:
        super().__init__()
        self.title_text = title
        self.question = question
        self.yes_label = yes
        self.no_label = no

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.question, id="question")
            with Horizontal():
                yield Button(f"{self.no_label} (N)", id="no", compact=True, variant="primary")
                yield Button(f"{self.yes_label} (Y)", id="yes", compact=True, variant="error")

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = self.title_text
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

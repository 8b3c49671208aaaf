"""A password typed without showing it (a file server's log-in); Esc gives up."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class PasswordScreen(ModalScreen[str | None]):
    """Dismisses with what was typed (Enter), or None (Esc)."""

    DEFAULT_CSS = """
    PasswordScreen { align: center middle; }
    PasswordScreen #dialog {
        width: 64; max-width: 100%; height: auto; border: round $secondary;
        padding: 0 1; background: $surface;
    }
    PasswordScreen Input { width: 1fr; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "give_up", "Cancel")]

    def __init__(self, prompt: str) -> None:
        super().__init__()
        self.prompt = prompt

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.prompt.rstrip(": ") + " (Enter; Esc gives up)", id="prompt")
            yield Input(password=True, id="password")

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = "Password"
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_give_up(self) -> None:
        self.dismiss(None)

"""The last guard before a disk is erased: the user types the disk's kernel name, or the last
four characters of its serial. Enter on anything else (an empty field above all) refuses, so
pressing Enter over and over never confirms."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from appliance.disk.model import Disk
from tui.jobspec import WritePlan
from tui.widgets.errorline import ErrorLine
from tui.widgets.planview import PlanView


def answers(disk: Disk) -> list[str]:
    """What the user is asked to type: the kernel name, and the serial's last 4 characters."""
    serial = (disk.serial or "").strip()
    return [disk.name, serial[-4:]] if len(serial) >= 4 else [disk.name]


def confirms(disk: Disk, typed: str) -> bool:
    typed = typed.strip()
    if not typed:
        return False
    if typed in (disk.name, disk.node):
        return True
    serial = (disk.serial or "").strip()
    return len(serial) >= 4 and typed.casefold() == serial[-4:].casefold()


def prompt(disk: Disk) -> str:
    serial = (disk.serial or "").strip()
    if len(serial) >= 4:
        return (
            f"To erase it, type {disk.name} (its kernel name) or {serial[-4:]} (the last "
            "4 characters of its serial), then Enter. Esc goes back; nothing is written."
        )
    return (
        f"To erase it, type {disk.name} (its kernel name), then Enter. Esc goes back; "
        "nothing is written."
    )


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen #dialog {
        width: 100; max-width: 100%; height: auto; max-height: 100%;
        border: heavy $error; background: $surface; padding: 0 1;
    }
    ConfirmScreen #prompt { height: auto; margin-top: 1; text-style: bold; }
    ConfirmScreen Input, ConfirmScreen Input:focus {
        width: 30; border: round $error;
    }
    ConfirmScreen Horizontal { height: 1; margin-top: 1; }
    ConfirmScreen Button { margin-right: 2; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back: write nothing")]

    def __init__(self, plan: WritePlan, *, blink: bool = True) -> None:
        super().__init__()
        self.plan = plan
        self.blink = blink
        self.attempts = 0

    def compose(self) -> ComposeResult:
        disk = self.plan.target
        with VerticalScroll(id="dialog"):
            yield PlanView(self.plan)
            yield Static(prompt(disk), id="prompt")
            yield Input(id="answer", max_length=64)  # no placeholder: it would look typed
            yield ErrorLine()
            with Horizontal():
                yield Button(
                    f"Erase {disk.name} and {self.plan.kind}",
                    id="erase",
                    variant="error",
                    compact=True,
                    disabled=True,
                )
                yield Button("Back (Esc)", id="back", compact=True)

    def on_mount(self) -> None:
        self.query_one("#dialog").border_title = f"Erase {self.plan.target.node}?"
        answer = self.query_one(Input)
        answer.cursor_blink = self.blink
        answer.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#erase", Button).disabled = not confirms(self.plan.target, event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        disk = self.plan.target
        if confirms(disk, event.value):
            self.dismiss(True)
            return
        self.attempts += 1
        typed = event.value.strip()
        said = f"You typed {typed!r}, which is not" if typed else "Nothing was typed; type"
        error = self.query_one(ErrorLine)
        error.say(f"{said} {' or '.join(answers(disk))}: nothing is written.")
        error.scroll_visible(animate=False)  # a long plan must not hide why nothing happened
        event.input.value = ""

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "erase" and confirms(self.plan.target, self.query_one(Input).value):
            self.dismiss(True)
        elif event.button.id == "back":
            self.dismiss(False)

    def action_back(self) -> None:
        self.dismiss(False)

"""Where a screen says what went wrong: one sentence, never a traceback."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class ErrorLine(Static):
    DEFAULT_CSS = """
    ErrorLine { height: auto; color: $error; text-style: bold; display: none; margin-top: 1; }
    ErrorLine.-shown { display: block; }
    ErrorLine.-note { color: $text-muted; text-style: italic; }
    """

    def say(self, sentence: str) -> None:
        """An error: one sentence, in the error colour."""
        self.update(Text(f"! {sentence}"))
        self.remove_class("-note")
        self.add_class("-shown")

    def note(self, sentence: str) -> None:
        """Not an error: what is happening now."""
        self.update(Text(sentence))
        self.add_class("-shown", "-note")

    def clear(self) -> None:
        self.update("")
        self.remove_class("-shown", "-note")

    @property
    def shown(self) -> bool:
        return self.has_class("-shown")

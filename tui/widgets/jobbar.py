"""One progress bar for the whole job, by bytes: done of total, percent, phase."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget


class JobBar(Widget):
    """[########............]  42.1%. Blocks on Unicode terminals; # and . in ASCII."""

    DEFAULT_CSS = """
    JobBar { height: 1; width: 1fr; }
    """

    done: reactive[int] = reactive(0)
    total: reactive[int] = reactive(0)
    finished: reactive[bool] = reactive(False)

    def fraction(self) -> float | None:
        if self.finished:
            return 1.0
        if self.total <= 0:
            return None
        return max(0.0, min(1.0, self.done / self.total))

    def render(self) -> Text:
        width = max(self.size.width - 9, 10)
        fraction = self.fraction()
        text = Text("[")
        if fraction is None:
            text.append("\u2591" * width, style="dim")
            text.append("]   ... ")
            return text
        filled = round(width * fraction)
        text.append("\u2588" * filled, style="bold green")
        text.append("\u2591" * (width - filled), style="dim")
        text.append(f"] {100 * fraction:5.1f}%")
        return text

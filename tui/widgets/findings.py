"""The preflight of a save, as a person reads it: the worst news first."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from appliance.plan.preflight import Preflight
from appliance.units import human_size

MARKS = {
    "stop": ("STOP", "bold red"),
    "warning": ("WARN", "bold yellow"),
    "info": ("info", "green"),
}


def render_preflight(preflight: Preflight) -> Text:
    text = Text()
    for finding in preflight.findings:
        mark, style = MARKS[finding.level]
        text.append(f"[{mark}] ", style=style)
        text.append(finding.sentence + "\n")
    if not preflight.findings:
        text.append("[ ok ] ", style="green")
        text.append("Nothing to report.\n")
    verdict = (
        "The save cannot start: see STOP above."
        if preflight.blocked
        else f"Ready: up to {human_size(preflight.estimate)} to read."
    )
    text.append(verdict, style="bold")
    return text


class FindingList(Static):
    DEFAULT_CSS = """
    FindingList { height: auto; padding: 0 1; }
    """

    def show(self, preflight: Preflight | None, waiting: str = "") -> None:
        if preflight is None:
            self.update(Text(waiting, style="italic"))
        else:
            self.update(render_preflight(preflight))

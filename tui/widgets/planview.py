"""What a restore or clone will destroy and what it will write, for the confirmation."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from appliance.units import human_size
from tui.jobspec import WritePlan


def render_plan(plan: WritePlan) -> Text:
    target = plan.target
    text = Text()
    text.append(f"{plan.kind.capitalize()} will ERASE this disk:\n", style="bold red")
    text.append(f"  {target.model or 'Unknown model'}", style="bold")
    text.append(f"  serial {target.serial or '(none)'}  {human_size(target.size)}  {target.node}\n")
    for line in plan.text.target_now:
        text.append(f"  now: {line}\n")
    text.append("and write onto it:\n", style="bold")
    text.append(f"  {plan.source}\n")
    for line in plan.text.layout:
        text.append(f"  {line}\n")
    if plan.verify_first:
        text.append(
            "  The image was never verified: every chunk is re-read and checked\n"
            "  before anything is written.\n"
        )
    text.rstrip()
    return text


class PlanView(Static):
    DEFAULT_CSS = """
    PlanView { height: auto; }
    """

    def __init__(self, plan: WritePlan, *, id: str | None = None) -> None:
        super().__init__(render_plan(plan), id=id)

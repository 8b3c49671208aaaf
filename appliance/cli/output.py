"""Shared output helpers for the commands: progress listeners and human figures."""

from __future__ import annotations

import json
import sys
import textwrap
from typing import Any

from appliance.progress import Progress, json_listener, terminal_listener


def make_progress(mode: str) -> Progress:
    if mode == "json":
        return Progress(json_listener(sys.stdout), interval=0.5)
    if mode == "none":
        return Progress(None)
    return Progress(terminal_listener(sys.stderr), interval=0.25)


def print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps({"type": "result", **data}, indent=None) + "\n")
    sys.stdout.flush()


WIDTH = 80  # the console of the live system


def fit80(text: str) -> str:
    """Each line wrapped to 80 columns; a continuation is indented 4 more than its line."""
    out: list[str] = []
    for line in text.splitlines():
        indent = line[: len(line) - len(line.lstrip())]
        out += textwrap.wrap(
            line, WIDTH, subsequent_indent=indent + "    ", break_on_hyphens=False
        ) or [""]
    return "\n".join(out)

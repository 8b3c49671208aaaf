"""Shared output helpers for the commands: progress listeners and human figures."""

from __future__ import annotations

import json
import sys
from typing import Any

from appliance.model import human_size
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


def rate(nbytes: int, seconds: float) -> str:
    per = nbytes / seconds if seconds > 0 else 0.0
    return f"{human_size(nbytes)} in {seconds:.1f} s ({per / 1e6:.1f} MB/s)"

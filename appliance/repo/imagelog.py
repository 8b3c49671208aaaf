"""An image's log.txt: what happened, for people, appended line by line."""

from __future__ import annotations

import time
from pathlib import Path


class ImageLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, line: str) -> None:
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {line}\n")
        except OSError:
            pass  # the log is a courtesy; the job's own errors are reported elsewhere

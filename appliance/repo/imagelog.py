"""An image's log.txt: what happened, for people, appended line by line."""

from __future__ import annotations

import contextlib
import time

from appliance.repo.repository import Repository


class ImageLog:
    def __init__(self, repo: Repository, image: str) -> None:
        self.store = repo.store
        self.key = repo.image_key(image, "log.txt")

    def write(self, line: str) -> None:
        stamped = f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {line}\n"
        # the log is a courtesy; the job's own errors are reported elsewhere
        with contextlib.suppress(OSError):
            self.store.append(self.key, stamped.encode("utf-8"))

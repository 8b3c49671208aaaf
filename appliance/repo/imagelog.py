"""An image's log.txt: what happened, for people, appended line by line.

In an encrypted repository each line is sealed on its own (it names disks, partitions and
labels) and stored as one line of text: "~" and the sealed bytes in base64, so appending
stays one write; `read_log` opens them again (a line that does not open is shown as such).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import time

from appliance.errors import CorruptData
from appliance.repo.repository import Repository

SEALED_LINE = "~"


class ImageLog:
    def __init__(self, repo: Repository, image: str) -> None:
        self.repo = repo
        self.store = repo.store
        self.key = repo.image_key(image, "log.txt")

    def write(self, line: str) -> None:
        stamped = f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {line}\n"
        data = stamped.encode("utf-8")
        if self.repo.sealer is not None:
            sealed = self.repo.sealer.seal(self.key, data.rstrip(b"\n"))
            data = f"{SEALED_LINE}{base64.b64encode(sealed).decode()}\n".encode()
        # the log is a courtesy; the job's own errors are reported elsewhere
        with contextlib.suppress(OSError):
            self.store.append(self.key, data)


def read_log(repo: Repository, image: str) -> list[str]:
    """The log's lines (opened, in an encrypted repository); OSError when it cannot be read."""
    key = repo.image_key(image, "log.txt")
    lines = repo.store.get(key).decode(errors="replace").splitlines()
    if repo.sealer is None:
        return lines
    out = []
    for line in lines:
        if not line.startswith(SEALED_LINE):
            out.append(f"(a line not written by this repository's key) {line}")
            continue
        try:
            blob = base64.b64decode(line[1:], validate=True)
            out.append(repo.sealer.open(key, blob, "A line").decode(errors="replace"))
        except (binascii.Error, CorruptData):
            out.append("(a damaged line)")
    return out

"""A receiver that came too late for the multicast stream restores from the sender's web
server instead.

udpcast takes receivers only before its transfer starts: a PC that boots after the sender
began (or after `--wait` ran out and udp-sender started with those who came) hears nothing
until its own wait ends. So the sender publishes, next to the repository it serves over
HTTP, a small `cast.json` (`announcement`: the image, its own web address, and whether the
stream is waiting, streaming or done). A receiver that knows the sender's address (`--from`,
`appliance.from=`) watches it while udp-receiver waits (`LateWatch`); when the stream began
without this PC (udp-receiver never said "Connected"), it stops udp-receiver and the restore
fetches every chunk over HTTP (`LatePlan`: the same plan, guards and write steps as any
restore; every chunk checked against its name). The receiver says so in one line (its
progress phase) and in its summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable
from functools import cached_property
from typing import Any

from appliance.errors import ApplianceError
from appliance.io.source import RepositorySource
from appliance.jobs.restore import RestorePlan
from appliance.repo.httpstore import HttpStore

ANNOUNCE = "cast.json"  # beside repo.json on the sender's web server; not a repository key
WAITING, STREAMING, DONE = "waiting", "streaming", "done"
POLL = 1.0  # seconds between two looks at the announcement


class RoomState:
    """The sender's side: what udp-sender said so far (its stderr, line by line), how many
    receivers joined, and the announcement it makes of it (cast.json)."""

    def __init__(self, image: str, url: str | None, expected: int, wait: int) -> None:
        self.image, self.url, self.expected, self.wait = image, url, expected, wait
        self.state = WAITING
        self.joined = 0
        self.left = 0  # receivers that left (or were dropped) before the transfer completed
        self.complete = False
        self.lines: list[str] = []
        self.on_start: Callable[[str], None] | None = None
        self.on_join: Callable[[str], None] | None = None

    def feed(self, line: str) -> None:
        """One line of udp-sender's stderr."""
        self.lines.append(line)
        if line.startswith("New connection from"):
            self.joined += 1
            if self.on_join is not None and self.state == WAITING:
                self.on_join(
                    f"waiting up to {self.wait} s for {self.expected} receivers: "
                    f"{self.joined} joined"
                )
        elif line.startswith(("Disconnecting #", "Dropping client #")):
            if self.state == STREAMING and not self.complete:
                self.left += 1
        elif line.startswith("Transfer complete"):
            self.complete = True
        elif line.startswith("Starting transfer") and self.state == WAITING:
            self.state = STREAMING
            if self.on_start is not None:
                self.on_start(self.started_words())

    def started_words(self) -> str:
        """The line said when the stream starts: with how many receivers."""
        if self.joined >= self.expected:
            return f"streaming to {self.joined} receiver{'s' if self.joined != 1 else ''}"
        missing = self.expected - self.joined
        return (
            f"streaming to {self.joined} of {self.expected} receivers ({missing} did not come "
            f"within {self.wait} s; a PC that comes later fetches the image over HTTP)"
        )

    def announce(self) -> bytes:
        """What the sender publishes as cast.json."""
        record = {
            "image": self.image,
            "http": self.url,
            "state": self.state,
            "receivers": self.joined,
            "expected": self.expected,
        }
        return json.dumps(record).encode()


def read_announcement(url: str) -> dict[str, Any] | None:
    """The sender's cast.json, None when it cannot be read (no sender there, an older one)."""
    try:
        record = json.loads(HttpStore(url, attempts=1).get(ANNOUNCE))
    except (ApplianceError, OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("image"), str):
        return None
    return record


def late_words(url: str) -> str:
    """The line a late receiver says."""
    return (
        f"this PC joined after the multicast stream began: every chunk comes over HTTP from {url}"
    )


def joined_session(errors_fd: int) -> bool:
    """Whether udp-receiver (its stderr in the file at `errors_fd`) joined a sender's
    session: it said "Connected as #N" among its first lines (read without moving the file's
    offset, which udp-receiver shares)."""
    return b"Connected as" in os.pread(errors_fd, 1 << 16, 0)


class LateWatch:
    """While udp-receiver waits for the stream's head: when the sender's announcement says
    the stream began and udp-receiver is not part of it, stop udp-receiver (the receive then
    goes on over HTTP: `late` holds the announcement)."""

    def __init__(self, url: str, proc: subprocess.Popen[bytes], errors_fd: int) -> None:
        self.url = url
        self.proc = proc
        self.errors_fd = errors_fd
        self.late: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="cast-late", daemon=True)

    def __enter__(self) -> LateWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        while not self._stop.wait(POLL):
            if joined_session(self.errors_fd) or self.proc.poll() is not None:
                return  # part of the stream (or udp-receiver ended by itself)
            record = read_announcement(self.url)
            if record is not None and record.get("state") in (STREAMING, DONE):
                if joined_session(self.errors_fd):
                    return
                self.late = record
                self.proc.kill()  # the stream's head will not come: stop waiting for it
                return


class LateSource(RepositorySource):
    """Every chunk from the sender's web server (fetched ahead, as a restore from a web
    server is), counted for the summary."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.fetched = 0
        self._lock = threading.Lock()

    def fetch(self, name: str) -> bytes:
        blob = super().fetch(name)
        with self._lock:  # the fetcher threads count together
            self.fetched += 1
        return blob


class LatePlan(RestorePlan):
    """A restore plan whose windows all come from the sender's repository over HTTP."""

    @cached_property
    def source(self) -> LateSource:
        base = RepositorySource.from_image(self.image)
        return LateSource(base.repo, base.image, base.regions, base.indexes)

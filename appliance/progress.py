"""Progress of a job as events that a terminal line, a JSON line or a UI can show.

A job owns one `Progress`; pipeline threads add bytes to it, and the job's main thread calls
`tick()` often, which hands an event to the listener at most every `interval` seconds.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TextIO

from appliance.units import clock, megabytes, speed


class Phase(StrEnum):
    """What a job is doing now. The value is what `--progress=json` prints (stable);
    `words` is what people read; `writes_target` says whether the phase writes the disk a
    restore or clone overwrites (a job stopped after such a phase left that disk incomplete)."""

    START = "start"
    MAP = "map"
    SAVE = "save"
    PROOF = "proof"
    SYNC = "sync"
    CHECK = "check"
    TABLE = "table"
    RESTORE = "restore"
    CLONE = "clone"
    COPY = "copy"
    RESIZE = "resize"
    VERIFY = "verify"
    EXPORT = "export"
    WRITE = "write"  # an image file onto disks (appliance write)
    EXTRACT = "extract"  # files copied out of an image (writes no disk it replaces)
    DONE = "done"

    @property
    def words(self) -> str:
        return _WORDS[self]

    @property
    def writes_target(self) -> bool:
        return self in (
            Phase.TABLE,
            Phase.RESTORE,
            Phase.CLONE,
            Phase.COPY,
            Phase.RESIZE,
            Phase.WRITE,
        )

    @property
    def moves_data(self) -> bool:
        """The phase whose bytes the rate and ETA are measured on."""
        return self in (
            Phase.SAVE,
            Phase.RESTORE,
            Phase.VERIFY,
            Phase.CLONE,
            Phase.EXPORT,
            Phase.WRITE,
            Phase.EXTRACT,
        )


_WORDS = {
    Phase.START: "starting",
    Phase.MAP: "reading which blocks are used",
    Phase.SAVE: "saving",
    Phase.PROOF: "checking the saved filesystems",
    Phase.SYNC: "making the image durable",
    Phase.CHECK: "checking the image before writing",
    Phase.TABLE: "writing the partition table",
    Phase.RESTORE: "restoring",
    Phase.CLONE: "cloning",
    Phase.COPY: "copying",
    Phase.WRITE: "writing the image file",
    Phase.EXTRACT: "copying files out of the image",
    Phase.RESIZE: "resizing a filesystem",
    Phase.VERIFY: "verifying",
    Phase.EXPORT: "writing the disk file",
    Phase.DONE: "finished",
}


def phase_words(phase: str) -> str:
    """A phase (or its JSON value) as people read it."""
    return Phase(phase).words if phase in Phase.__members__.values() else phase


def writes_target(phase: str) -> bool:
    return phase in Phase.__members__.values() and Phase(phase).writes_target


@dataclass(frozen=True)
class ProgressEvent:
    phase: Phase
    done: int  # bytes of used data done
    total: int  # bytes of used data in the whole job (>= done; 0 while unknown)
    rate: float  # bytes per second since the job started moving data
    eta: float | None  # seconds left, None while unknown
    elapsed: float  # seconds since the job started
    message: str = ""  # what is happening, for people


Listener = Callable[[ProgressEvent], None]


class Progress:
    def __init__(self, listener: Listener | None = None, interval: float = 0.5) -> None:
        self.listener = listener
        self.interval = interval
        self.phase = Phase.START
        self.message = ""
        self.total = 0
        self._done = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._moving_since: float | None = None
        self._moving_base = 0
        self._last_emit = 0.0

    def add(self, nbytes: int) -> None:
        with self._lock:
            self._done += nbytes

    def adjust_total(self, delta: int) -> None:
        """Correct the total once a step knows its real size (a shrunk partition copies the
        shrunk filesystem's used bytes, not the source's)."""
        with self._lock:
            self.total = max(self.total + delta, self._done)

    @property
    def done(self) -> int:
        return self._done

    def set_phase(self, phase: Phase, message: str = "") -> None:
        self.phase = phase
        self.message = message
        if phase.moves_data and self._moving_since is None:
            self._moving_since = time.monotonic()
            self._moving_base = self._done
        self.tick(force=True)

    def event(self) -> ProgressEvent:
        now = time.monotonic()
        rate = 0.0
        if self._moving_since is not None and now > self._moving_since:
            rate = (self._done - self._moving_base) / (now - self._moving_since)
        # Never more done than the total: an estimate that fell short grows to what is done.
        total = max(self.total, self._done)
        eta = (total - self._done) / rate if rate > 0 and total else None
        return ProgressEvent(
            self.phase, self._done, total, rate, eta, now - self._started, self.message
        )

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.listener is None or (not force and now - self._last_emit < self.interval):
            return
        self._last_emit = now
        self.listener(self.event())


def terminal_listener(stream: TextIO = sys.stderr) -> Listener:
    """One self-overwriting line on a terminal; plain lines every few seconds otherwise."""
    is_tty = stream.isatty()
    state = {"last": 0.0}

    def show(ev: ProgressEvent) -> None:
        pct = f"{min(100.0, 100 * ev.done / ev.total):5.1f}%" if ev.total else "  -  "
        line = (
            f"{ev.phase:8} {pct} {megabytes(ev.done)} of {megabytes(ev.total)}  "
            f"{speed(ev.rate, 6)}  ETA {clock(ev.eta)}  {ev.message}"
        )
        if is_tty:
            end = "\n" if ev.phase == "done" else ""
            stream.write("\r\033[K" + line[:200] + end)
        elif ev.phase == "done" or ev.elapsed - state["last"] >= 5:
            state["last"] = ev.elapsed
            stream.write(line + "\n")
        stream.flush()

    return show


def json_listener(stream: TextIO = sys.stdout) -> Listener:
    """One JSON object per line: {"type": "progress", phase, done, total, rate, eta, ...}."""

    def show(ev: ProgressEvent) -> None:
        stream.write(json.dumps({"type": "progress", **asdict(ev)}) + "\n")
        stream.flush()

    return show

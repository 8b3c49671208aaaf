"""The unattended job's output: every line on its terminal and on the other kernel consoles.

A machine restored by the kernel command line often has no screen but a serial console; the
lines and the progress that the job writes to tty1 go there too.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO, cast

from appliance.progress import Listener, ProgressEvent, terminal_listener


class Console:
    """Writes every line to the job's terminal and to the other kernel consoles (serial)."""

    def __init__(self, main: TextIO, mirrors: Sequence[TextIO] = ()) -> None:
        self.main = main
        self.mirrors = list(mirrors)

    def say(self, line: str) -> None:
        for stream in [self.main, *self.mirrors]:
            try:
                stream.write(line + "\n")
                stream.flush()
            except OSError:
                continue  # a serial port nobody listens to must not stop the job

    def listener(self) -> Listener:
        shows = [terminal_listener(self.main)]
        shows += [terminal_listener(cast(TextIO, _Plain(m))) for m in self.mirrors]

        def show(event: ProgressEvent) -> None:
            for one in shows:
                with contextlib.suppress(OSError):
                    one(event)

        return show

    def close(self) -> None:
        for stream in self.mirrors:
            with contextlib.suppress(OSError):
                stream.close()


class _Plain:
    """A stream that says it is no terminal: progress as plain lines every few seconds."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        return self._stream.write(text.replace("\r", ""))

    def flush(self) -> None:
        self._stream.flush()


def mirror_consoles(
    main: TextIO, active: Path = Path("/sys/class/tty/console/active"), dev: Path = Path("/dev")
) -> list[TextIO]:
    """The kernel consoles other than virtual terminals and ``main`` itself, opened for
    writing (a serial console shows the job too)."""
    try:
        names = active.read_text().split()
    except OSError:
        return []
    try:
        own = os.fstat(main.fileno()).st_rdev
    except (OSError, ValueError, AttributeError):
        own = None
    out: list[TextIO] = []
    for name in names:
        if re.fullmatch(r"tty\d*", name):
            continue  # virtual terminals: tty1 is the job's own screen
        try:
            fd = os.open(dev / name, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            continue
        if own is not None and os.fstat(fd).st_rdev == own:
            os.close(fd)
            continue
        out.append(open(fd, "w", encoding="utf-8", errors="replace"))  # noqa: SIM115
    return out

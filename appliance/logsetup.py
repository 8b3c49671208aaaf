"""Where the appliance's log goes: the one logging setup and the one internal-error report.

The engine only logs (`logging.getLogger(__name__)`); a front end (the command line, the
full-screen interface, the unattended mode) calls `setup_logging` once, and from then on every
record lands in `log_path()`, never as a bare line on the user's terminal. A front end that
catches an error that is not an ApplianceError (a bug) calls `report_internal_error`: the
traceback goes to the log file and the user gets one sentence that names it.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from appliance import __version__

FORMAT = "%(asctime)s %(front_end)s %(name)s %(levelname)s %(message)s"


def log_path() -> Path:
    """$APPLIANCE_LOG, else /var/log/appliance.log when /var/log is writable, else /tmp."""
    env = os.environ.get("APPLIANCE_LOG")
    if env:
        return Path(env)
    var = Path("/var/log")
    return var / "appliance.log" if os.access(var, os.W_OK) else Path("/tmp/appliance.log")


class _FrontEnd(logging.Filter):
    """Stamps each record with the front end that wrote it (one file serves all three)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.front_end = name

    def filter(self, record: logging.LogRecord) -> bool:
        record.front_end = self.front_end
        return True


class _Setup:
    """The handler this module installed on the root logger, and the file it writes."""

    handler: logging.Handler | None = None
    path: Path | None = None
    writable = False
    front_end = "appliance"


def setup_logging(front_end: str, level: int = logging.INFO) -> Path:
    """Send every log record at `level` and above to `log_path()`; return that path.

    `front_end` ("cli", "tui", "unattended") is written on each line. Calling it again
    replaces the handler it installed before (the file may have changed with $APPLIANCE_LOG).
    When the file cannot be opened the records are dropped rather than printed (a full-screen
    interface must not print over its own screen), and the path is still returned.
    """
    path = log_path()
    handler: logging.Handler
    try:
        handler = logging.FileHandler(path, encoding="utf-8")
        writable = True
    except OSError:
        handler = logging.NullHandler()
        writable = False
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_FrontEnd(front_end))
    root = logging.getLogger()
    if _Setup.handler is not None:
        root.removeHandler(_Setup.handler)
        _Setup.handler.close()
    root.addHandler(handler)
    root.setLevel(level)
    _Setup.handler, _Setup.path, _Setup.writable = handler, path, writable
    _Setup.front_end = front_end
    return path


def report_internal_error(
    exc: BaseException, stopped: str = "the job", logger: str = "appliance"
) -> str:
    """Log `exc` with its traceback to the log file; return the one sentence for the user.

    `stopped` is what the error stopped ("the job", "the interface"); `logger` is the name the
    record is logged under. Sets the logging up for a front end that has not done so yet (or
    again, when $APPLIANCE_LOG names another file now).
    """
    if _Setup.handler is None or _Setup.path != log_path():
        setup_logging(_Setup.front_end)
    logging.getLogger(logger).error(
        "internal error, appliance %s, %s", __version__, sys.argv, exc_info=exc
    )
    if not _Setup.writable:
        return f"An internal error stopped {stopped}; the log file {_Setup.path} cannot be written."
    return f"An internal error stopped {stopped}; the details are in {_Setup.path}."

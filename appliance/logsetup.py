"""Where the appliance's log goes, and the one logging setup the front ends call.

The engine only logs (`logging.getLogger(__name__)`); a front end decides where it lands.
`log_path()` is the file named in the "details are in ..." sentences of the command line,
the full-screen interface and the unattended mode.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def log_path() -> Path:
    """$APPLIANCE_LOG, else /var/log/appliance.log when /var/log is writable, else /tmp."""
    env = os.environ.get("APPLIANCE_LOG")
    if env:
        return Path(env)
    var = Path("/var/log")
    return var / "appliance.log" if os.access(var, os.W_OK) else Path("/tmp/appliance.log")


def setup_logging(level: int = logging.INFO) -> Path:
    """Send every log record at `level` and above to `log_path()`; return that path.

    When the file cannot be opened the records are dropped (a full-screen interface must not
    print over its own screen), and the path is still returned for the sentences.
    """
    path = log_path()
    handler: logging.Handler
    try:
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    return path

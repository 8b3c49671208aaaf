"""A dying disk: a read-only loop device over an image file whose reads of given byte ranges
fail with EIO (served by tests/kit/faultyfile.py, a FUSE file, in a child process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kit.loops import Loops

SERVER = Path(__file__).resolve().parent / "faultyfile.py"


@contextmanager
def dying_disk(loops: Loops, image: Path, where: Path, bad: list[tuple[int, int]]) -> Iterator[str]:
    """The loop device's node; reads of the `bad` (offset, length) ranges of `image` fail."""
    where.mkdir()
    server = subprocess.Popen(
        [sys.executable, str(SERVER), str(image), str(where), *(f"{s}:{n}" for s, n in bad)],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not (where / "disk").exists():
            assert server.poll() is None and time.monotonic() < deadline, server.stderr
            time.sleep(0.05)
        node = loops.attach(where / "disk", read_only=True)
        yield node
        loops.detach(node)
    finally:
        deadline = time.monotonic() + 20  # the detached loop may hold the file a moment
        while os.path.ismount(where) and time.monotonic() < deadline:
            if subprocess.run(["umount", str(where)], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        server.wait(timeout=20)
        os.sync()

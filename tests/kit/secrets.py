"""Passphrases in tests: a private passphrase file, a command run while `ps` is watched, and
a search for a secret's bytes in every file below a folder.

Nothing here imports the appliance package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def passphrase_file(folder: Path, text: str, name: str = "pass") -> Path:
    """A root-only file holding `text` (as `--passphrase-file` wants it)."""
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
    return path


@dataclass
class Watched:
    returncode: int
    stdout: str
    stderr: str
    ps_lines: list[str] = field(default_factory=list)  # every process's command line seen


def run_watching_ps(args: list[str], env: dict[str, str] | None = None) -> Watched:
    """`python -m appliance.cli ARGS`, sampling every process's command line while it runs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    seen: list[str] = []
    while proc.poll() is None:
        ps = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True)
        seen.extend(line for line in ps.stdout.splitlines() if "appliance" in line)
        time.sleep(0.2)
    out, err = proc.communicate()
    assert "Traceback" not in err, err
    return Watched(proc.returncode, out, err, seen)


def files_holding(folder: Path, secret: bytes) -> list[Path]:
    """Every file below `folder` whose bytes contain `secret`."""
    return [p for p in folder.rglob("*") if p.is_file() and secret in p.read_bytes()]


def run_handed_over(
    code: str, env: dict[str, str], fds: tuple[int, ...]
) -> subprocess.CompletedProcess[str]:
    """`python -c CODE` with `env` added and the descriptors `fds` passed (and closed here
    once it ran): a child process that gets what its parent unlocked through a pipe."""
    try:
        return subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, **env},
            pass_fds=fds,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        for fd in fds:
            os.close(fd)

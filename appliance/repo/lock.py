"""One writer per repository: a lock file that names its owner, and that a dead owner leaves
behind harmlessly (same host, process gone, replaced or a zombie: the lock is stale and is
taken over). A lock that stays empty or unreadable for a moment (its writer died between
creating and filling it) is stale too.

A file created with O_EXCL works on every filesystem a repository may live on (FAT, NTFS,
NFS, SMB), where flock() does not.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from appliance.errors import RepositoryError, RepositoryLocked

# How long an empty lock file may stay empty before it counts as stale: its writer fills it
# right after creating it, so a few re-reads are enough.
EMPTY_GRACE = 0.3


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state first); [] if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat[stat.rfind(")") + 2 :].split()


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat), None if it is gone."""
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 else None


def process_running(pid: int, start: object) -> bool:
    """The process is there, started at `start`, and is not a zombie (it has exited)."""
    fields = _stat_fields(pid)
    if len(fields) <= 19 or fields[0] in ("Z", "X", "x"):
        return False
    return fields[19] == start


def describe_owner(owner: dict[str, object]) -> str:
    """Who holds a lock, from what the lock file says (missing keys are left out)."""
    parts = [str(owner["command"])] if owner.get("command") else []
    if owner.get("host"):
        parts.append(f"on {owner['host']}")
    if owner.get("pid") is not None:
        parts.append(f"process {owner['pid']}")
    if owner.get("since"):
        parts.append(f"since {owner['since']}")
    return ", ".join(parts) if parts else "its owner is not recorded"


class RepoLock:
    def __init__(self, path: Path, command: str) -> None:
        self.path = path
        self.command = command
        self.held = False

    def _owner_alive(self, owner: dict[str, object]) -> bool:
        if not owner:  # empty or unreadable after the grace: its writer died creating it
            return False
        if owner.get("host") != socket.gethostname():
            return True  # cannot tell for another machine: assume it is working
        pid = owner.get("pid")
        if not isinstance(pid, int):
            return False
        return process_running(pid, owner.get("start"))

    def _settled_owner(self) -> dict[str, object] | None:
        """The owner; an empty lock is re-read for a moment (its writer may be filling it)."""
        deadline = time.monotonic() + EMPTY_GRACE
        while True:
            owner = self._read_owner()
            if owner != {} or time.monotonic() >= deadline:
                return owner
            time.sleep(0.05)

    @property
    def where(self) -> str:
        """The repository the lock guards, for messages."""
        return str(self.path.parent)

    def _create(self, data: bytes) -> bool:
        """Make the lock holding `data`; False when there is one already. A lock kept
        elsewhere (an object in a bucket) overrides _create, _read and _remove."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:  # Ctrl-C while filling it: the lock is not ours to leave behind
            self._remove()
            raise
        return True

    def _read(self) -> bytes:
        """What the lock says; FileNotFoundError when there is none."""
        return self.path.read_bytes()

    def _remove(self) -> None:
        """Remove the lock; one that is already gone is no error."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def acquire(self) -> None:
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "start": process_start_time(os.getpid()),
            "command": self.command,
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        data = json.dumps(me).encode()
        for _attempt in range(3):
            try:
                if self._create(data):
                    self.held = True
                    return
            except OSError as exc:
                raise RepositoryError(
                    f"The repository at {self.where} cannot be locked for writing: {exc.strerror}."
                ) from exc
            owner = self._settled_owner()
            if owner is not None and self._owner_alive(owner):
                raise RepositoryLocked(
                    f"The repository is in use by another job ({describe_owner(owner)}); "
                    "wait for it to finish."
                ) from None
            self._remove()  # stale: its owner died
        raise RepositoryLocked("The repository lock keeps changing hands; try again.")

    def _read_owner(self) -> dict[str, object] | None:
        try:
            data = json.loads(self._read() or b"{}")
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def release(self) -> None:
        if self.held:
            self._remove()
            self.held = False

    def __enter__(self) -> RepoLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

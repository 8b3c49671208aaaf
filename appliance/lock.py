"""One writer per repository: a lock file that names its owner, and that a dead owner leaves
behind harmlessly (same host, process gone or replaced: the lock is stale and is taken over).

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


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


class RepoLock:
    def __init__(self, path: Path, command: str) -> None:
        self.path = path
        self.command = command
        self.held = False

    def _owner_alive(self, owner: dict[str, object]) -> bool:
        if not owner:  # empty or unreadable: a writer died while creating it, or is creating it
            try:
                return time.time() - self.path.stat().st_mtime < 30
            except FileNotFoundError:
                return False
        if owner.get("host") != socket.gethostname():
            return True  # cannot tell for another machine: assume it is working
        pid = owner.get("pid")
        if not isinstance(pid, int):
            return False
        start = process_start_time(pid)
        return start is not None and start == owner.get("start")

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "start": process_start_time(os.getpid()), "command": self.command,
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _attempt in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = self._read_owner()
                if owner is not None and self._owner_alive(owner):
                    raise RepositoryLocked(
                        f"The repository is in use by another job ({owner.get('command')} on "
                        f"{owner.get('host')}, process {owner.get('pid')}, since "
                        f"{owner.get('since')}); wait for it to finish.") from None
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()  # stale: its owner died
                continue
            except OSError as exc:
                raise RepositoryError(f"The repository at {self.path.parent} cannot be locked "
                                      f"for writing: {exc.strerror}.") from exc
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
                handle.flush()
                os.fsync(handle.fileno())
            self.held = True
            return
        raise RepositoryLocked("The repository lock keeps changing hands; try again.")

    def _read_owner(self) -> dict[str, object] | None:
        try:
            data = json.loads(self.path.read_text() or "{}")
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.held = False

    def __enter__(self) -> RepoLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

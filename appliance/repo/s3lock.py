"""One writer per repository in a bucket: the object PREFIX/lock, made with a conditional PUT.

`If-None-Match: *` makes the PUT fail (412) when the object exists, so of two jobs that start
at once exactly one gets the lock: AWS S3 honours it (since 2024), and so do the servers that
implemented it after AWS (moto's server does: the tests use it). A server that refuses the
header (501, 400) gets a best effort instead: the lock is looked for, written, and read back;
two jobs that start within the same second could then both believe they hold it, and
docs/design.md says so. A server that ignores the header is caught by the same read-back when
the two writes do not interleave exactly.

What the lock says and how a stale one is taken over is repo/lock.py's (the same JSON: host,
process, its start time, the command): a lock left by a dead job of this machine is stale; one
of another machine is assumed alive and named in the refusal, as a folder's lock is.
"""

from __future__ import annotations

from pathlib import Path

from appliance.repo.lock import RepoLock
from appliance.repo.s3store import S3Store

KEY = "lock"


class S3Lock(RepoLock):
    """RepoLock's rules, kept in an object of the bucket instead of a file."""

    def __init__(self, store: S3Store, command: str) -> None:
        super().__init__(Path(KEY), command)  # the path is not used: the bucket holds it
        self.store = store
        self.conditional = True  # False once the server refused If-None-Match

    @property
    def where(self) -> str:
        return self.store.where

    def _create(self, data: bytes) -> bool:
        if self.store.exists(KEY):
            return False
        made = self.store.put_new(KEY, data) if self.conditional else None
        if made is False:
            return False
        if made is None:  # the server does not take the condition: the best effort
            self.conditional = False
            self.store.put(KEY, data, durable=True)
        try:
            return self.store.get(KEY) == data  # another job's PUT came last: it holds it
        except FileNotFoundError:
            return False

    def _read(self) -> bytes:
        return self.store.get(KEY)

    def _remove(self) -> None:
        self.store.delete(KEY)

"""A read that failed because the network did, told apart from damaged data.

A repository on the network fails in its own ways in the middle of a job: a web server or a
bucket stops answering (refused, reset, timed out after the store's retries: the stores
raise `NetworkError` or an OSError with a connection errno), or the share a folder
repository is mounted from goes away (sshfs, cifs, nfs: EIO, ENOTCONN, ESTALE...). None of
that says anything about the stored bytes, so it must not end as CorruptData (exit 9):
`network_failure` turns it into one sentence naming the host and the cause (NetworkError,
exit 12), and None for anything else (a local disk's EIO stays what it was).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from appliance.disk.usage import unescape
from appliance.errors import NetworkError

#: errnos that only a connection gives, whatever the store
CONNECTION_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ENOTCONN,
        errno.EPIPE,
    }
)
#: and those a network filesystem gives when its server is gone (EIO on a local disk is the
#: disk's own error, not this)
SHARE_ERRNOS = CONNECTION_ERRNOS | {errno.EIO, errno.ESTALE, errno.ENOLINK, errno.ECOMM}
#: filesystems mounted from another machine, and the program a user knows them by
NETWORK_FILESYSTEMS = {
    "fuse.sshfs": "sshfs",
    "cifs": "SMB",
    "smb3": "SMB",
    "nfs": "NFS",
    "nfs4": "NFS",
    "fuse.rclone": "rclone",
    "ceph": "CephFS",
    "9p": "9p",
}


@dataclass(frozen=True)
class Share:
    """The network mount that holds a path: its point, filesystem type and source."""

    point: str
    fstype: str
    source: str

    @property
    def host(self) -> str:
        """The server's name in the mount's source: user@HOST:/path (sshfs), //HOST/share
        (cifs), HOST:/export (nfs)."""
        text = self.source
        if text.startswith("//"):
            return text[2:].partition("/")[0]
        if text.startswith("["):  # [IPv6]:/path
            return text[1:].partition("]")[0]
        host = text.rpartition("@")[2] if "@" in text.partition(":")[0] else text
        return host.partition(":")[0] or text

    @property
    def kind(self) -> str:
        return NETWORK_FILESYSTEMS.get(self.fstype, self.fstype)


def network_share(path: Path, mountinfo: str | None = None) -> Share | None:
    """The network mount holding `path`, None when it is on a local filesystem. Read from
    the mount table alone: a dead FUSE mount cannot even be stat()ed."""
    text = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    where = os.path.abspath(path)
    best: Share | None = None
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        if len(fields) < sep + 3:
            continue
        point = unescape(fields[4])
        if not (where == point or where.startswith(point.rstrip("/") + "/")):
            continue
        if best is None or len(point) >= len(best.point):
            best = Share(point, fields[sep + 1], unescape(fields[sep + 2]))
    if best is None or best.fstype not in NETWORK_FILESYSTEMS:
        return None
    return best


def _cause(exc: OSError) -> str:
    return (exc.strerror or os.strerror(exc.errno or 0) or str(exc)).rstrip(".")


def network_failure(
    store: object,
    exc: BaseException,
    doing: str,
    share: Share | None = None,
    mountinfo: str | None = None,
) -> NetworkError | None:
    """The sentence for `exc`, raised by `store` while `doing` ("reading chunk X"), when the
    network is the cause; None when it is not. `share` is the network mount that held the
    folder when the repository was opened: sshfs unmounts its share itself when its
    connection is lost, so from then on the folder is an empty local one and a read says
    "no such file" (ENOENT), not a network error."""
    if isinstance(exc, NetworkError):
        return exc
    if not isinstance(exc, OSError):
        return None
    root = getattr(store, "root", None)
    if isinstance(root, Path):
        if share is None and exc.errno not in SHARE_ERRNOS:
            return None  # a local folder's missing file: no need to read the mount table
        now = network_share(root, mountinfo)
        if share is not None and (now is None or now.point != share.point):
            return NetworkError(
                f"The file server {share.host} stopped answering while {doing} from the "
                f"{share.kind} share {share.source} (the share is no longer mounted: "
                f"{share.kind} lost its connection)."
            )
        if now is None or exc.errno not in SHARE_ERRNOS:
            return None
        return NetworkError(
            f"The file server {now.host} stopped answering while {doing} from the "
            f"{now.kind} share {now.source} ({_cause(exc)})."
        )
    endpoint = getattr(store, "endpoint", None)
    if isinstance(endpoint, str) and exc.errno in CONNECTION_ERRNOS:
        bucket = getattr(store, "bucket", "")
        return NetworkError(f"The bucket {bucket} stopped answering while {doing}: {_cause(exc)}.")
    return None


def raise_if_lost(store: object, exc: OSError, doing: str, share: Share | None) -> None:
    """Raise network_failure's NetworkError (from `exc`) when there is one."""
    lost = network_failure(store, exc, doing, share)
    if lost is not None:
        raise lost from exc

"""The mount command lines for a repository on a file server, and what their failures mean.

`mount_command` builds the argv of sshfs, mount.cifs (``mount -t cifs``) or mount.nfs
(``mount -t nfs``); no secret is ever in it (sshfs reads the password on stdin, mount.cifs a
``credentials=`` file only root can read). `explain` turns what the program printed into one
sentence that names the server and the cause (tests/unit/repo/test_netcommand.py holds the
real texts each program prints).
"""

from __future__ import annotations

import re
from pathlib import Path

from appliance.errors import RepositoryError
from appliance.repo.netaddress import NetAddress

SSH_TIMEOUT = 15  # seconds to wait for the server to answer
# ssh's options: only the appliance's own known hosts file, strict checking, a dead server
# found within a minute.
SSH_OPTIONS = (
    "sshfs_verbose",  # without it sshfs hides what ssh says went wrong
    "StrictHostKeyChecking=yes",
    "GlobalKnownHostsFile=/dev/null",
    f"ConnectTimeout={SSH_TIMEOUT}",
    "ServerAliveInterval=15",
    "ServerAliveCountMax=4",
)
MOUNT_OPTIONS = ("nodev", "nosuid", "noexec")
# NFS: a server that goes away fails the job (an error the job reports) instead of hanging
# it forever; one try to mount, not two minutes of retries.
NFS_OPTIONS = ("soft", "timeo=150", "retrans=3", "retry=0")


def _host(address: NetAddress) -> str:
    return f"[{address.host}]" if ":" in address.host else address.host


def sshfs_command(
    address: NetAddress,
    mountpoint: Path,
    *,
    known_hosts: Path,
    writable: bool,
    identity: Path | None = None,
    password: bool = False,
) -> list[str]:
    """sshfs's argv; with `password` it reads the password on its stdin (password_stdin)."""
    user = f"{address.user}@" if address.user else ""
    options = [*SSH_OPTIONS, f"UserKnownHostsFile={known_hosts}", "rw" if writable else "ro"]
    if identity is not None:
        options += [f"IdentityFile={identity}", "IdentitiesOnly=yes"]
    if password:
        options += [
            "password_stdin",
            "PreferredAuthentications=password,keyboard-interactive",
            "NumberOfPasswordPrompts=1",
        ]
    else:
        options += ["BatchMode=yes"]  # never a prompt that nobody answers
    port = ["-p", str(address.port)] if address.port else []
    return [
        "sshfs",
        f"{user}{_host(address)}:{address.path}",
        str(mountpoint),
        *port,
        "-o",
        ",".join(options),
    ]


def cifs_command(
    address: NetAddress, mountpoint: Path, *, writable: bool, credentials: Path | None
) -> list[str]:
    """``mount -t cifs //host/share/path``; the user, password and domain are in the
    `credentials` file (none: a guest log-in)."""
    options = ["rw" if writable else "ro", *MOUNT_OPTIONS]
    options.append(f"credentials={credentials}" if credentials is not None else "guest")
    if address.port:
        options.append(f"port={address.port}")
    unc = f"//{_host(address)}{address.path}"
    return ["mount", "-t", "cifs", unc, str(mountpoint), "-o", ",".join(options)]


def nfs_command(address: NetAddress, mountpoint: Path, *, writable: bool) -> list[str]:
    """``mount -t nfs host:/export/path`` (NFS 4, or 3 when the server offers only that)."""
    options = ["rw" if writable else "ro", *MOUNT_OPTIONS, *NFS_OPTIONS]
    if address.port:
        options.append(f"port={address.port}")
    spec = f"{_host(address)}:{address.path}"
    return ["mount", "-t", "nfs", spec, str(mountpoint), "-o", ",".join(options)]


# -- what a failure means ----------------------------------------------------------------
UNREACHABLE = ("timed out", "no route to host", "network is unreachable", "host is unreachable")
UNKNOWN_NAME = ("could not resolve", "failed to resolve", "name or service not known")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    useful = [line for line in lines if "connection reset by peer" not in line.lower()]
    found = (useful or lines or ["no message"])[-1]
    return found.rstrip(".")


def _common(address: NetAddress, low: str, service: str) -> str | None:
    """The causes every protocol shares: the name, the network, a refused connection."""
    where = address.where
    if any(word in low for word in UNKNOWN_NAME):
        return (
            f"The server name {address.host} is not known; check the address and that this "
            "machine's network is up."
        )
    if "connection refused" in low:
        return f"{where} refused the connection: no {service} server answers there."
    if any(word in low for word in UNREACHABLE):
        return (
            f"{where} cannot be reached over the network; check the address, the cable "
            "and that the server is on."
        )
    return None


def explain_ssh(address: NetAddress, stderr: str, known_hosts: Path) -> str:
    low = stderr.lower()
    where = address.where
    user = address.user or "root"
    if "identification has changed" in low or ("host key for" in low and "has changed" in low):
        return (
            f"The ssh host key of {where} is not the one accepted before: if the server was "
            f"reinstalled, remove its line from {known_hosts}; otherwise someone may be "
            "in between, so nothing was sent."
        )
    if "host key verification failed" in low:
        return f"The ssh host key of {where} is not known yet, so nothing was sent to it."
    common = _common(address, low, "ssh")
    if common:
        return common
    if "permission denied" in low or "too many authentication failures" in low:
        return f"{where} refused the log-in of {user}: wrong password or key."
    if "unable to negotiate" in low or "no matching" in low:
        return f"{where} and this appliance share no ssh protocol version or algorithm."
    if "no such file or directory" in low:
        return f"The folder {address.path} does not exist on {where}."
    if "not a directory" in low:
        return f"{address.path} on {where} is a file, not a folder."
    if "subsystem request failed" in low:
        return f"{where} offers no SFTP service, which sshfs needs."
    return f"{address.text} cannot be mounted: {_last_line(stderr)}."


CIFS_ERROR = re.compile(r"mount error\((\d+)\)")


def explain_cifs(address: NetAddress, stderr: str) -> str:
    low = stderr.lower()
    where = address.where
    share = f"//{address.host}/{address.share}"
    found = CIFS_ERROR.search(stderr)
    code = int(found.group(1)) if found else None
    if "not supported by the system" in low or code == 19:
        return f"The share {share} cannot be mounted: this system's kernel has no SMB support."
    if code in (13, 126) or "permission denied" in low:
        user = address.user or "the user"
        return (
            f"{where} refused {user} on the share {address.share}: wrong user name or "
            "password, or no access to that share."
        )
    if code == 2:
        return f"The share or folder {address.path} does not exist on {where}."
    if code == 6:
        return f"{where} offers no share named {address.share}."
    if code == 20:
        return f"{address.path} on {where} is a file, not a folder."
    if code == 111:
        return f"{where} refused the connection: no SMB server answers there."
    if code in (101, 110, 113, 115):
        return (
            f"{where} cannot be reached over the network; check the address, the cable "
            "and that the server is on."
        )
    if code == 112:
        return (
            f"{where} did not answer in SMB 2 or 3: it speaks only the old SMB 1, which "
            "the appliance does not use, or it is down."
        )
    if code in (95, 22):
        return f"{where} refused the SMB protocol version or a mount option of the appliance."
    if code == 30:
        return f"The share {share} on {where} is read-only."
    common = _common(address, low, "SMB")
    if common:
        return common
    detail = _last_line(CIFS_ERROR.sub("", stderr.split("Refer to the")[0]) or stderr)
    return f"The share {share} cannot be mounted: {detail.lstrip(': ')}."


def explain_nfs(address: NetAddress, stderr: str) -> str:
    low = stderr.lower()
    where = address.where
    if "no such device" in low:
        return f"{address.text} cannot be mounted: this system's kernel has no NFS support."
    if "access denied by server" in low:
        return (
            f"{where} does not let this machine mount {address.path}: its exports do not "
            "allow it, or the folder does not exist."
        )
    if "no such file or directory" in low:
        return f"The folder {address.path} does not exist on {where}."
    if "not a directory" in low:
        return f"{address.path} on {where} is a file, not a folder."
    if ("version" in low and "not supported" in low) or "protocol not supported" in low:
        return f"{where} refused the NFS protocol version (the appliance speaks NFS 4 and 3)."
    common = _common(address, low, "NFS")
    if common:
        return common
    if "read-only" in low:
        return f"The export {address.path} on {where} is read-only."
    if "permission denied" in low or "operation not permitted" in low:
        return f"{where} refused this machine the folder {address.path}: permission denied."
    return f"{address.text} cannot be mounted: {_last_line(stderr).removeprefix('mount.nfs: ')}."


class FolderMissing(RepositoryError):
    """The server answered, and the share, export or folder is not there."""


def folder_missing(address: NetAddress, stderr: str) -> bool:
    low = stderr.lower()
    if address.scheme == "smb":
        found = CIFS_ERROR.search(stderr)
        return found is not None and found.group(1) == "2"
    if "identification has changed" in low or "host key" in low:
        return False
    return "no such file or directory" in low or (
        address.scheme == "nfs" and "access denied by server" in low
    )


def explain(address: NetAddress, stderr: str, known_hosts: Path) -> RepositoryError:
    """The one sentence for a failed mount of `address` (FolderMissing when the server says
    the folder is not there)."""
    if address.scheme == "ssh":
        sentence = explain_ssh(address, stderr, known_hosts)
    elif address.scheme == "smb":
        sentence = explain_cifs(address, stderr)
    else:
        sentence = explain_nfs(address, stderr)
    kind = FolderMissing if folder_missing(address, stderr) else RepositoryError
    return kind(sentence)

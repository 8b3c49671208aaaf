"""A repository on a file server: the address (``ssh://``, ``smb://``, ``nfs://``), the
credentials for it, and the mount command lines (sshfs, mount.cifs, mount.nfs).

Addresses::

    ssh://[user@]host[:port]/path          sshfs; the key in --credentials or root's keys
    smb://[user@]host[:port]/share[/path]  mount.cifs; SMB 2 or 3
    nfs://host[:port]/export[/path]        mount.nfs; NFS 4 or 3

A password is never part of an address (it would show in the process list, the log and
the kernel command line): it is asked, masked, or read from a credentials file that only
root can read (appliance.repo.netmount). Nothing here runs a program; netmount does.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from appliance.errors import RepositoryError, UsageError

SCHEMES = ("ssh", "smb", "nfs")
DEFAULT_PORTS = {"ssh": 22, "smb": 445, "nfs": 2049}
# The keys a credentials file may hold, one ``key=value`` a line (mount.cifs's own format,
# plus ``identity``: an ssh private key file).
CREDENTIAL_KEYS = ("username", "password", "domain", "identity")
HOST_RE = re.compile(r"^[A-Za-z0-9._:-]+$")


@dataclass(frozen=True)
class NetAddress:
    """Where a repository on a file server is (never with a password)."""

    scheme: str
    host: str
    path: str  # absolute, without a trailing slash ("/" for the top)
    user: str | None = None
    port: int | None = None

    @property
    def text(self) -> str:
        """The address as people write it (for messages)."""
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{user}{host}{port}{self.path}"

    @property
    def where(self) -> str:
        """The server as the error sentences name it: host, and the port when not the usual."""
        if self.port and self.port != DEFAULT_PORTS[self.scheme]:
            return f"{self.host} port {self.port}"
        return self.host

    @property
    def share(self) -> str:
        """smb: the share (the first part of the path)."""
        return self.path.strip("/").split("/", 1)[0]

    def parent(self) -> NetAddress:
        """The folder above (a save with --create makes the repository's folder there)."""
        up = self.path.rsplit("/", 1)[0] or "/"
        return NetAddress(self.scheme, self.host, up, self.user, self.port)

    @property
    def leaf(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def is_network(location: str | os.PathLike[str] | None) -> bool:
    """The location is an address that netmount mounts (ssh, smb or nfs)."""
    if location is None:
        return False
    scheme, sep, _ = os.fspath(location).partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def parse_address(text: str) -> NetAddress:
    """The address in `text` (is_network(text) is true), or UsageError with the sentence."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"The repository address {text} is not valid ({exc}).") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UsageError(f"{text} is not an ssh://, smb:// or nfs:// address.")
    if parts.password is not None:
        raise UsageError(
            f"The repository address {scheme}://{parts.hostname}... holds a password; leave it "
            "out: it is asked for, or read from a file given with --credentials."
        )
    host = parts.hostname or ""
    if not host or not HOST_RE.match(host):
        raise UsageError(f"The repository address {text} names no server.")
    if parts.query or parts.fragment:
        raise UsageError(f"The repository address {text} has a ? or # part; leave it out.")
    path = "/" + "/".join(p for p in unquote(parts.path).split("/") if p)
    if any(p in (".", "..") for p in path.split("/")):
        raise UsageError(f"The repository address {text} has a . or .. in its path.")
    if scheme == "smb" and path == "/":
        raise UsageError(f"The address {text} names no share; write smb://{host}/SHARE/FOLDER.")
    if scheme == "nfs" and parts.username:
        raise UsageError(f"An nfs:// address has no user name; leave {parts.username}@ out.")
    user = unquote(parts.username) if parts.username else None
    return NetAddress(scheme, host, path, user, port)


@dataclass(frozen=True)
class Credentials:
    """What a server asks for. Never logged or printed (repr hides the password)."""

    username: str | None = None
    password: str | None = None
    domain: str | None = None
    identity: Path | None = None  # ssh: a private key file
    key: bytes | None = None  # ssh: that key's bytes, once read (unattended: the file's
    # partition is unmounted before the job)

    def __repr__(self) -> str:
        secret = "***" if self.password else None
        return (
            f"Credentials(username={self.username!r}, password={secret!r}, "
            f"domain={self.domain!r}, identity={self.identity!r})"
        )


def parse_credentials(text: str, source: str, folder: Path | None = None) -> Credentials:
    """``key=value`` lines (username, password, domain, identity); # comments and blank
    lines are skipped. A relative identity is taken from `folder`."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        if key == "user":
            key = "username"
        if key == "pass":
            key = "password"
        if not sep or key not in CREDENTIAL_KEYS:
            raise UsageError(
                f"Line {number} of the credentials file {source} is not one of "
                f"{', '.join(k + '=' for k in CREDENTIAL_KEYS)}."
            )
        values[key] = value if key == "password" else value.strip()
    identity = None
    if values.get("identity"):
        identity = Path(values["identity"])
        if not identity.is_absolute() and folder is not None:
            identity = folder / identity
    return Credentials(
        username=values.get("username") or None,
        password=values.get("password"),
        domain=values.get("domain") or None,
        identity=identity,
    )


def read_credentials(path: Path, *, private: bool = True) -> Credentials:
    """The credentials file `path`; with `private` (the default) a file that a user other
    than root can read (or change) is refused with a sentence."""
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UsageError(f"The credentials file {path} does not exist.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"The credentials file {path} cannot be read.") from exc
    if private and not stat.S_ISREG(info.st_mode):
        raise UsageError(f"The credentials file {path} is not a plain file.")
    if private and (info.st_mode & 0o077 or info.st_uid != os.geteuid()):
        raise RepositoryError(
            f"The credentials file {path} can be read or changed by other users; "
            f"make it root's own and private (chmod 600 {path}) and try again."
        )
    return parse_credentials(text, str(path), path.parent)

"""The ssh servers the appliance trusts: its own known hosts file, and the first meeting.

sshfs runs ssh with StrictHostKeyChecking=yes against STATE_DIR/known_hosts only (never
root's or the system's file). A server that is not in it yet is asked for its keys
(ssh-keyscan) and refused with its fingerprint in the sentence (HostKeyUnknown), unless the
user accepted that fingerprint (``--accept-host-key SHA256:...``, or the interface's
question): then the matching key, and only it, is added to the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import RepositoryError
from appliance.repo.netaddress import NetAddress
from appliance.tools import run

# Which key a fingerprint is shown for first: the one ssh itself prefers.
KEY_ORDER = ("ED25519", "ECDSA", "RSA")
SCAN_TIMEOUT = 8


def state_dir() -> Path:
    return Path(os.environ.get("APPLIANCE_STATE_DIR", "/var/lib/appliance"))


def known_hosts_file() -> Path:
    return state_dir() / "known_hosts"


@dataclass(frozen=True)
class HostKey:
    line: str  # as known_hosts holds it: "[host]:port type base64"
    kind: str  # ED25519, ECDSA, RSA
    fingerprint: str  # SHA256:...


class HostKeyUnknown(RepositoryError):
    """An ssh server met for the first time: nothing is sent until its key is accepted."""

    def __init__(self, address: NetAddress, keys: list[HostKey]) -> None:
        first = keys[0]
        super().__init__(
            f"The ssh server {address.where} is not known yet: its {first.kind} host key "
            f"has the fingerprint {first.fingerprint}; if the server shows the same "
            f"(ssh-keygen -lf on its host key), add --accept-host-key {first.fingerprint}."
        )
        self.address = address
        self.keys = keys

    @property
    def fingerprint(self) -> str:
        return self.keys[0].fingerprint


def host_pattern(address: NetAddress) -> str:
    """How known_hosts names the server: host, or [host]:port for another port than 22."""
    if address.port in (None, 22):
        return address.host
    return f"[{address.host}]:{address.port}"


def is_known(address: NetAddress, known: Path | None = None) -> bool:
    known = known or known_hosts_file()
    if not known.exists():
        return False
    proc = run(["ssh-keygen", "-F", host_pattern(address), "-f", str(known)], check=False)
    return proc.returncode == 0 and bool(proc.stdout.strip())


def parse_fingerprint(line: str) -> tuple[str, str] | None:
    """(kind, fingerprint) from ``ssh-keygen -lf`` output: "256 SHA256:x host (ED25519)"."""
    fields = line.split()
    if len(fields) < 3 or not fields[1].startswith("SHA256:"):
        return None
    return fields[-1].strip("()").upper(), fields[1]


def scan(address: NetAddress) -> list[HostKey]:
    """The server's host keys (none when it does not answer), ssh's preferred kind first."""
    port = str(address.port or 22)
    proc = run(
        ["ssh-keyscan", "-T", str(SCAN_TIMEOUT), "-p", port, address.host],
        check=False,
        timeout=SCAN_TIMEOUT * 4,
    )
    keys: list[HostKey] = []
    for line in proc.stdout.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        shown = run(["ssh-keygen", "-lf", "-"], check=False, input_text=line + "\n")
        parsed = parse_fingerprint(shown.stdout.strip())
        if parsed is not None:
            keys.append(HostKey(line.strip(), parsed[0], parsed[1]))

    def order(key: HostKey) -> int:
        return KEY_ORDER.index(key.kind) if key.kind in KEY_ORDER else len(KEY_ORDER)

    return sorted(keys, key=order)


def normal_fingerprint(text: str) -> str:
    text = text.strip()
    return text if text.startswith("SHA256:") else f"SHA256:{text}"


def remember(key: HostKey, known: Path | None = None) -> None:
    """Add `key` to the appliance's known hosts file (root's only)."""
    known = known or known_hosts_file()
    known.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(known, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(key.line + "\n")


def check_host_key(address: NetAddress, accept: str | None) -> str | None:
    """Nothing when the server is known (or does not answer: the mount then says why); a
    line saying which key was accepted; HostKeyUnknown when it is new and not accepted."""
    if is_known(address):
        return None
    keys = scan(address)
    if not keys:
        return None
    if accept is None:
        raise HostKeyUnknown(address, keys)
    wanted = normal_fingerprint(accept)
    for key in keys:
        if key.fingerprint == wanted:
            remember(key)
            return f"accepted the {key.kind} host key {key.fingerprint} of {address.where}"
    raise RepositoryError(
        f"The ssh server {address.where} has the host key {keys[0].fingerprint}, not "
        f"{wanted}; nothing was sent to it."
    )

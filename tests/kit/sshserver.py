"""A real ssh server for a test: /usr/sbin/sshd on 127.0.0.1 and a free port, run as the
test's own process, with a host key and a client key made for the test (ssh-keygen).

Root may log in with the test's key only (this config only; the system's /etc/ssh is not
read or changed). sshd insists on its privilege separation folder /run/sshd: it is made when
missing, as Debian's ssh service makes it. Nothing here imports the appliance package.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kit.webserve import free_port

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class SshServer:
    port: int
    folder: Path  # the server's files: keys, config, log; the repository goes below it
    credentials: Path  # identity=<the client key>, mode 0600
    wrong_credentials: Path  # a key the server does not know
    fingerprint: str  # SHA256:... of the server's ED25519 host key
    pid: int = 0  # the listening sshd (the test's own process)

    def address(self, path: Path | str, user: str = "root") -> str:
        return f"ssh://{user}@127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return (self.folder / "sshd.log").read_text(errors="replace")


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)], check=True
    )


def _private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


PROBE = "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)"


def _listening(port: int, netns: str | None) -> bool:
    if netns is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False
    probe = ["ip", "netns", "exec", netns, sys.executable, "-c", PROBE, str(port)]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def _wait_listening(
    port: int, proc: subprocess.Popen[bytes], log: Path, netns: str | None = None
) -> None:
    deadline = time.monotonic() + 20
    while not _listening(port, netns):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


@contextmanager
def ssh_server(folder: Path, netns: str | None = None) -> Iterator[SshServer]:
    """sshd listening on 127.0.0.1 (of the network namespace `netns`, when given: a PC of
    tests/kit/castroom.py); stopped (by its PID) at the end."""
    folder.mkdir(mode=0o700, parents=True)
    for name in ("host_key", "client_key", "wrong_key"):
        _keygen(folder / name)
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    config = folder / "sshd_config"
    config.write_text(
        "ListenAddress 127.0.0.1\n"
        f"HostKey {folder / 'host_key'}\n"
        "PidFile none\n"
        "UsePAM no\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\n"
        "StrictModes no\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    shown = subprocess.run(
        ["ssh-keygen", "-lf", str(folder / "host_key.pub")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    port = free_port()
    log = folder / "sshd.log"
    with open(log, "wb") as out:
        inside = ["ip", "netns", "exec", netns] if netns else []  # ip execs sshd: same PID
        proc = subprocess.Popen(
            [*inside, SSHD, "-D", "-e", "-f", str(config), "-p", str(port)], stderr=out, stdout=out
        )
    try:
        _wait_listening(port, proc, log, netns)
        yield SshServer(
            port=port,
            folder=folder,
            credentials=_private(folder / "good.cred", f"identity={folder / 'client_key'}\n"),
            wrong_credentials=_private(folder / "bad.cred", f"identity={folder / 'wrong_key'}\n"),
            fingerprint=shown[1],
            pid=proc.pid,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, 9)
            proc.wait()


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        ppid = next((line.split()[1] for line in text.splitlines() if line.startswith("PPid:")), "")
        if ppid == str(pid):
            out.append(int(status.parent.name))
    return out


def kill_server(server: SshServer) -> None:
    """SIGKILL the test's sshd and every connection it forked (by their PIDs), as a server
    that crashes or loses power: the shares mounted from it stop answering."""
    found, todo = [], [server.pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(_children(pid))
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def fuse_mounts_under(root: Path) -> list[str]:
    """Mount points below `root`, from /proc/mounts."""
    prefix = f"{root}/"
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    return [p for p in points if p.startswith(prefix) or p == str(root)]

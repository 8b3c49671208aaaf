"""A room of PCs for the multicast tests: network namespaces joined by a bridge.

`room(n)` makes a hub namespace holding a bridge and n "PC" namespaces, each with one veth
(named eth0 inside) plugged into the bridge, an address 10.77.0.X/24 and the multicast
route 224.0.0.0/4 on it. Nothing is made in the machine's own namespace. At the end every
process still running in those namespaces is stopped by its PID (they are the test's) and
the namespaces are deleted, which removes the veths and the bridge with them.

`damaging_receiver(folder)` is a folder to put first on a receiver's PATH: its udp-receiver
runs the real one and flips one byte of its output every `every` bytes (after the head), so
that receiver gets a damaged stream while the others get a clean one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUBNET = "10.77.0"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


@dataclass(frozen=True)
class Pc:
    namespace: str
    address: str
    interface: str = "eth0"

    def command(self, *argv: str, env: dict[str, str] | None = None) -> list[str]:
        """`argv` run inside this PC's namespace (with `env` added)."""
        extra = [f"{k}={v}" for k, v in (env or {}).items()]
        return ["ip", "netns", "exec", self.namespace, "env", *extra, *argv]

    def appliance(self, *args: str, env: dict[str, str] | None = None) -> list[str]:
        return self.command(sys.executable, "-m", "appliance.cli", *args, env=env)


def _stop_all(namespace: str) -> None:
    """Stop every process left in the namespace (the test started them all) by PID."""
    for _ in range(50):
        proc = ip("netns", "pids", namespace, check=False)
        pids = [int(p) for p in proc.stdout.split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


@contextlib.contextmanager
def room(count: int) -> Iterator[list[Pc]]:
    tag = f"mc{os.getpid() % 100000}"
    hub = f"{tag}-hub"
    made: list[str] = []
    try:
        ip("netns", "add", hub)
        made.append(hub)
        ip("-n", hub, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        ip("-n", hub, "link", "set", "br0", "up")
        pcs: list[Pc] = []
        for n in range(1, count + 1):
            ns = f"{tag}-pc{n}"
            ip("netns", "add", ns)
            made.append(ns)
            port = f"p{n}"
            ip("-n", hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("-n", hub, "link", "set", port, "master", "br0", "up")
            address = f"{SUBNET}.{n + 1}"
            ip("-n", ns, "addr", "add", f"{address}/24", "brd", "+", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
            pcs.append(Pc(ns, address))
        yield pcs
    finally:
        for ns in reversed(made):
            _stop_all(ns)
            ip("netns", "del", ns, check=False)


FLIP = """
import sys
every, skip = int(sys.argv[1]), int(sys.argv[2])
out, pos = sys.stdout.buffer, 0
while piece := sys.stdin.buffer.read(65536):
    data = bytearray(piece)
    first = skip + -(-(max(skip, pos) - skip) // every) * every
    for at in range(first, pos + len(data), every):
        data[at - pos] ^= 0x5A
    out.write(data)
    pos += len(data)
out.flush()
"""


def damaging_receiver(folder: Path, every: int = 3 * 1024 * 1024, skip: int = 1 << 20) -> Path:
    """A folder whose udp-receiver damages what the real one received (see the doc)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flip.py").write_text(FLIP)
    script = folder / "udp-receiver"
    script.write_text(
        "#!/bin/sh\n"
        f'/usr/bin/udp-receiver "$@" | {sys.executable} {folder / "flip.py"} {every} {skip}\n'
    )
    script.chmod(0o755)
    return folder

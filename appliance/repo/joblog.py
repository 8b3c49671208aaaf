"""One summary line per PC per job, written back into the repository's ``logs/`` folder.

A lab restores one image onto thirty PCs at once; afterwards the technician reads which PC
got what, and whether it worked, in one place: the repository. Each job writes its own file,
``logs/<date>-<pc>-<random>.txt`` holding one line, so thirty PCs writing at the same moment
never share a file (no append races on a share, no read-modify-write on a bucket).
``cat logs/*.txt`` gives the room's table. A web server is read-only: there the line is only
printed.

The line is tab-separated: UTC time, PC (DMI vendor, product and serial when the firmware
gives them, else the host name), MAC of the first network card, image, target, result
(``ok`` or ``FAILED: sentence``), seconds.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from dataclasses import dataclass

from appliance.repo.store import Store

FOLDER = "logs/"
DMI = "/sys/class/dmi/id"
NET = "/sys/class/net"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_NO_MAC = "00:00:00:00:00:00"


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return " ".join(handle.read().split())
    except OSError:
        return ""


@dataclass(frozen=True)
class PcIdentity:
    """Who this PC is, as the firmware and the network card say."""

    name: str  # "LENOVO 20XW S/N PF2ABCDE", or the host name
    mac: str  # "52:54:00:12:34:56", or "" without a network card

    @property
    def slug(self) -> str:
        """The identity as a file name part: the serial or host name, then the MAC's digits."""
        base = _UNSAFE.sub("_", self.name).strip("_")[:60] or "pc"
        return f"{base}-{self.mac.replace(':', '')}" if self.mac else base


def pc_identity(dmi: str = DMI, net: str = NET) -> PcIdentity:
    """This PC's identity: DMI vendor, product and serial when present, else the host name;
    the MAC of the first network card (by name, loopback and all-zero addresses skipped)."""
    vendor = _read(os.path.join(dmi, "sys_vendor"))
    product = _read(os.path.join(dmi, "product_name"))
    serial = _read(os.path.join(dmi, "product_serial"))
    useless = {"", "none", "to be filled by o.e.m.", "default string", "0", "system serial number"}
    if serial.casefold() in useless:
        serial = ""
    parts = [p for p in (vendor, product) if p.casefold() not in useless]
    if serial:
        parts.append(f"S/N {serial}")
    name = " ".join(parts) if serial or parts else ""
    if not serial:
        name = f"{name} host {socket.gethostname()}".strip()
    mac = ""
    try:
        cards = sorted(os.listdir(net))
    except OSError:
        cards = []
    for card in cards:
        address = _read(os.path.join(net, card, "address")).lower()
        if card != "lo" and address and address != _NO_MAC:
            mac = address
            break
    return PcIdentity(name, mac)


def summary_line(
    pc: PcIdentity, image: str, target: str, result: str, seconds: float, when: float
) -> str:
    """The job's line (tab-separated, no tab or newline inside a field)."""
    fields = [
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
        pc.name,
        pc.mac or "-",
        image,
        target or "-",
        result,
        f"{seconds:.1f}",
    ]
    return "\t".join(" ".join(f.split()) for f in fields)


def log_key(pc: PcIdentity, when: float) -> str:
    """``logs/<date>-<pc>-<random>.txt``: one file per PC per job, never shared."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when))
    return f"{FOLDER}{stamp}-{pc.slug}-{secrets.token_hex(4)}.txt"


def write_summary(store: Store, pc: PcIdentity, line: str, when: float) -> str | None:
    """Write ``line`` into its own file under the repository's logs/; the key written, or
    None when the store cannot be written (a web server, a read-only share): then the line
    is only printed. Raises nothing: the job's own result stands either way."""
    key = log_key(pc, when)
    try:
        store.put(key, (line + "\n").encode(), durable=True)
    except Exception:  # a log line never fails the job: a web server, a read-only share
        return None
    return key

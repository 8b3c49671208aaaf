"""Naming a disk or a partition the way people and kernel command lines do.

A disk is ``serial:XYZ`` (its serial number, as ``appliance disks`` shows it), ``model:NAME``
(must match exactly one disk; ``_`` stands for a space, case and repeated blanks do not count)
or a kernel name (``sda``, ``/dev/nvme0n1``, ``/dev/disk/by-id/...``). A partition is
``LABEL=``, ``UUID=``, ``PARTUUID=``, ``PARTLABEL=`` (looked up with blkid) or a /dev/ path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from appliance.disk import probe
from appliance.disk.model import Disk
from appliance.errors import DeviceError, UsageError
from appliance.tools import run

TAGS = ("LABEL", "UUID", "PARTUUID", "PARTLABEL")


def _norm(text: str) -> str:
    return " ".join(text.replace("_", " ").split()).casefold()


def match_disk(spec: str, disks: Sequence[Disk]) -> Disk:
    """The one disk that ``serial:XYZ`` or ``model:NAME`` names among ``disks``."""
    kind, _, wanted = spec.partition(":")
    if kind == "serial":
        found = [d for d in disks if d.serial and d.serial.strip() == wanted.strip()]
    elif kind == "model":
        found = [d for d in disks if d.model and _norm(d.model) == _norm(wanted)]
    else:
        raise UsageError(f"{spec} is not serial:..., model:... or a kernel name.")
    if len(found) == 1:
        return found[0]
    if not found:
        known = "; ".join(d.describe() for d in disks) or "none"
        raise DeviceError(f"No disk has the {kind} {wanted!r}. The disks are: {known}.")
    names = ", ".join(d.node for d in found)
    raise UsageError(
        f"{len(found)} disks have the {kind} {wanted!r} ({names}); name the disk "
        "by its serial number instead."
    )


def resolve_disk(spec: str) -> str:
    """The device node of the disk ``spec`` names (serial:, model: or a kernel name)."""
    if spec.startswith(("serial:", "model:")):
        return match_disk(spec, probe.list_disks()).node
    return "/dev/" + probe.resolve_name(spec)


def resolve_partition(spec: str, role: str = "the repository") -> str:
    """The partition node that ``LABEL=...``, ``UUID=...`` or ``/dev/...`` names; ``role``
    says in the sentences what the partition is for."""
    tag, sep, value = spec.partition("=")
    if not sep:
        if not spec.startswith("/dev/"):
            raise UsageError(
                f"{spec} (the partition of {role}) is not LABEL=..., UUID=..., PARTUUID=..., "
                "PARTLABEL=... or a /dev/ path."
            )
        if not os.path.exists(spec):
            raise DeviceError(f"There is no partition {spec} for {role}.")
        return spec
    if tag.upper() not in TAGS:
        raise UsageError(
            f"{spec} (the partition of {role}): {tag} is not one of {', '.join(TAGS)}."
        )
    # -c /dev/null: probe the devices now rather than trust a cache from another boot
    proc = run(
        ["blkid", "-c", "/dev/null", "-o", "device", "-t", f"{tag.upper()}={value}"], check=False
    )
    nodes = sorted(set(proc.stdout.split()))
    if not nodes:
        raise DeviceError(f"No partition has {tag.upper()}={value} for {role}.")
    if len(nodes) > 1:
        raise UsageError(
            f"{len(nodes)} partitions have {tag.upper()}={value} "
            f"({', '.join(nodes)}); name {role} by UUID=... instead."
        )
    return nodes[0]

"""Choosing the disk a lab restore overwrites by a rule, for PCs that differ in their disks.

A room of PCs boots one kernel command line, so ``appliance.target=`` cannot name each PC's
disk; it names a rule that every PC applies to its own disks:

- ``auto`` or ``internal``: the only internal disk: not removable, not on USB, not the stick
  the appliance started from. Zero or several such disks: a sentence, nothing is written.
- ``largest``: the largest disk that is not on USB (nor removable, nor the boot stick); two
  of that size: a sentence.
- ``serial=XYZ``: the disk whose serial number (as ``appliance disks`` shows it) is XYZ;
  named so, the boot stick is chosen, and the job refuses it with its sentence.

Anything else is a disk name as before (appliance.disk.naming). The rule only chooses: the
job then applies every safety rule of appliance.plan.safety to the chosen disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass

from appliance.disk.bootmedium import boot_disks
from appliance.disk.model import Disk
from appliance.errors import DeviceError, UsageError
from appliance.units import human_size

SYSFS = "/sys"
RULES = ("auto", "internal", "largest")
SERIAL = "serial="


def is_rule(text: str) -> bool:
    """``text`` names a rule rather than a disk."""
    return text in RULES or text.startswith(SERIAL)


def on_usb(disk: Disk, sysfs: str = SYSFS) -> bool:
    """The disk hangs off a USB bus (its sysfs device path goes through a usb node)."""
    device = os.path.realpath(os.path.join(sysfs, "block", disk.name, "device"))
    return "/usb" in device


@dataclass(frozen=True)
class Choice:
    """The disk a rule chose and the line that says why (printed and logged before writing)."""

    disk: Disk
    line: str


def describe(disk: Disk) -> str:
    """Model, size and serial: what a technician checks against the PC's sticker."""
    serial = disk.serial or "no serial"
    return f"{disk.node} ({disk.model or 'unknown model'}, {human_size(disk.size)}, {serial})"


def choose_target(
    rule: str,
    disks: Sequence[Disk],
    *,
    usb: Callable[[Disk], bool] = on_usb,
    boot: Set[str] | None = None,
) -> Choice:
    """The one disk ``rule`` picks among ``disks``; DeviceError when none fits (disks may
    still appear: the caller may wait), UsageError when the rule cannot tell several apart.
    `boot`: the boot stick's kernel names (appliance.disk.bootmedium's when None)."""
    boot = boot_disks() if boot is None else boot
    fixed = [
        d
        for d in disks
        if not d.removable and not d.boot_stick and d.name not in boot and not usb(d)
    ]
    if rule.startswith(SERIAL):
        wanted = rule[len(SERIAL) :].strip()
        found = [d for d in disks if d.serial and d.serial.strip() == wanted]
        if len(found) == 1:
            return Choice(found[0], f"the disk with the serial {wanted}: {describe(found[0])}")
        if not found:
            known = "; ".join(describe(d) for d in disks) or "none"
            raise DeviceError(f"No disk has the serial {wanted!r}. The disks are: {known}.")
        raise UsageError(
            f"{len(found)} disks have the serial {wanted!r} "
            f"({', '.join(d.node for d in found)}); name the disk by its kernel name."
        )
    if rule in ("auto", "internal"):
        if len(fixed) == 1:
            return Choice(fixed[0], f"the only internal disk: {describe(fixed[0])}")
        if not fixed:
            raise DeviceError(
                f"appliance.target={rule} found no internal disk (not USB, not removable, "
                "not the boot stick); the disks are: "
                f"{'; '.join(describe(d) for d in disks) or 'none'}."
            )
        raise UsageError(
            f"appliance.target={rule} found {len(fixed)} internal disks "
            f"({'; '.join(describe(d) for d in fixed)}); choose one with "
            "appliance.target=largest or appliance.target=serial=..."
        )
    if rule == "largest":
        if not fixed:
            raise DeviceError(
                "appliance.target=largest found no disk that is not on USB, not removable "
                f"and not the boot stick; the disks are: "
                f"{'; '.join(describe(d) for d in disks) or 'none'}."
            )
        size = max(d.size for d in fixed)
        top = [d for d in fixed if d.size == size]
        if len(top) > 1:
            raise UsageError(
                f"appliance.target=largest found {len(top)} disks of {human_size(size)} "
                f"({'; '.join(describe(d) for d in top)}); choose one with "
                "appliance.target=serial=..."
            )
        return Choice(top[0], f"the largest non-USB disk: {describe(top[0])}")
    raise UsageError(
        f"appliance.target={rule} is not a rule; use auto, internal, largest or serial=XYZ."
    )

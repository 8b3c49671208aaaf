"""The ISO's boot menus: their kernel parameters, and a copy of the ISO whose menus add some.

The VM tests reach the guest through a root shell on its serial console, which the ISO gives
only with the test-only kernel parameter ``appliance_test_serial_shell=1`` (docs/live-usb.md).
A technician would add it at the boot menu (Tab in isolinux, ``e`` in GRUB); the tests write
it into a copy of the ISO's two menu files instead (xorriso, the boot records replayed), so the
firmware still boots the copy through the ISO's own loaders: isolinux, or shim and the signed
GRUB. Nothing here imports the appliance package."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

SERIAL_SHELL = "appliance_test_serial_shell=1"
# the files holding the menus' `linux` (GRUB) and `append` (isolinux) lines
MENUS = ("/boot/grub/grub.cfg", "/isolinux/live.cfg")


def _xorriso(*args: str | Path) -> str:
    done = subprocess.run(["xorriso", *map(str, args)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"xorriso {' '.join(map(str, args))} failed:\n{done.stderr}")
    return done.stdout


def extract(iso: Path, path: str, out: Path) -> Path:
    """One file of the ISO, copied to ``out``."""
    _xorriso("-osirrox", "on", "-indev", iso, "-extract", path, out)
    return out


def grub_params(grub_cfg: str) -> str:
    """The kernel parameters of the GRUB menu's first `linux /live/vmlinuz` entry."""
    for line in grub_cfg.splitlines():
        found = re.match(r"\s*linux\s+/live/vmlinuz\S*\s+(.*)$", line)
        if found:
            return found.group(1).strip()
    raise AssertionError("no `linux /live/vmlinuz` line in the ISO's grub.cfg")


def add_params(menu: str, params: str) -> str:
    """``menu`` with ``params`` after every `boot=live` (each entry that starts the system)."""
    edited, count = re.subn(r"(?<=\s)boot=live(?=\s)", f"boot=live {params}", menu)
    if count == 0:
        raise AssertionError("no boot=live in a menu of the ISO")
    return edited


def with_params(iso: Path, out: Path, params: str) -> Path:
    """A copy of ``iso`` at ``out`` whose boot menus add ``params`` to every live entry."""
    work = out.parent / f"{out.name}.menus"
    work.mkdir(parents=True, exist_ok=True)
    maps: list[str | Path] = []
    for number, path in enumerate(MENUS):
        local = extract(iso, path, work / f"{number}.cfg")
        local.write_text(add_params(local.read_text(), params))
        maps += ["-map", local, path]
    out.unlink(missing_ok=True)
    _xorriso("-indev", iso, "-outdev", out, "-boot_image", "any", "replay", *maps)
    return out

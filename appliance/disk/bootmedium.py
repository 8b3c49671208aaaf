"""The disk the appliance booted from: found from what live-boot mounted, never guessed.

live-boot (Debian 12's 1:20230131) mounts the medium it booted from read-only at
/run/live/medium (/lib/live/mount/medium before 2017) and keeps it mounted: the squashfs the
running system is made of is a file on it. The medium's device number in
/proc/self/mountinfo leads through sysfs to the whole disk (a partition to its disk; a loop
device to the disk that holds its file, as with ``findiso=``, where the ISO is a file on a
stick or a disk; see appliance.disk.usage.disk_names_of_devnum). That disk is "this boot
stick": listed as such, never read as a source, never written.

With ``toram`` live-boot copies the medium into a tmpfs, unmounts the stick and moves the
tmpfs onto /run/live/medium (its copy_live_to; with ``findiso=`` it also detaches the ISO's
loop device and unmounts /run/live/findiso). Nothing in /run/live, /proc or sysfs names the
stick any more, so it cannot be told apart from any other disk: `BootMedium.in_ram` says
so, and the stick is not marked (a guess, such as "the removable disk with an ISO9660 on
it", could mark a customer's disk instead). Booted over the network (``fetch=``,
``httpfs=``, NFS), the medium is on no disk either.

The seam for tests: ``APPLIANCE_LIVE_MEDIUM`` names the medium's mount point(s) instead of
live-boot's (separated by ``:``), so a test can mount a real loop device there and see it
treated as the boot stick; the unit tests pass `mountinfo` text and a fake sysfs tree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.disk.usage import RAM_FILESYSTEMS, SYS, Mount, disk_names_of_devnum, mounts

#: where live-boot mounts the medium it booted from (today's, then before live-boot 5)
LIVE_MEDIUM = ("/run/live/medium", "/lib/live/mount/medium")
#: the test seam: mount point(s) to treat as the live medium instead of LIVE_MEDIUM
ENV = "APPLIANCE_LIVE_MEDIUM"

RAM_NOTE = (
    "The appliance runs from RAM (booted with toram): the stick it started from is no "
    "longer in use and cannot be told apart from the other disks; check a disk's model "
    "and serial before erasing it."
)


@dataclass(frozen=True)
class BootMedium:
    """What live-boot booted from, as far as the kernel still tells."""

    mountpoint: str | None  # the medium's mount point; None: not a live system
    fstype: str | None  # the medium's filesystem: iso9660, vfat, ext4; tmpfs after toram
    disks: frozenset[str]  # kernel names of the whole disks it is on (may be empty)

    @property
    def in_ram(self) -> bool:
        """Copied into RAM (``toram``): the stick was unmounted and cannot be found."""
        return self.fstype in RAM_FILESYSTEMS

    def note(self) -> str | None:
        """A sentence for the disk lists when the boot stick cannot be shown, else None."""
        return RAM_NOTE if self.in_ram else None


NOT_LIVE = BootMedium(None, None, frozenset())


def medium_places(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The mount points to look at: the test seam's, or live-boot's."""
    env = os.environ if environ is None else environ
    given = env.get(ENV, "")
    if not given:
        return LIVE_MEDIUM
    return tuple(os.path.realpath(place) for place in given.split(os.pathsep) if place)


def _medium_mount(table: Sequence[Mount], place: str) -> Mount | None:
    """The mount seen at `place`: the last one made there (it hides those under it)."""
    found = [mount for mount in table if mount.point == place]
    return found[-1] if found else None


def find_boot_medium(
    *,
    mountinfo: str | None = None,
    sys_root: Path = SYS,
    places: Sequence[str] | None = None,
) -> BootMedium:
    """The live medium and the whole disks under it (NOT_LIVE when nothing is mounted at
    any of `places`). `mountinfo` is /proc/self/mountinfo's text (read when None)."""
    table = mounts(mountinfo)
    for place in medium_places() if places is None else places:
        mount = _medium_mount(table, place)
        if mount is None:
            continue
        if mount.fstype in RAM_FILESYSTEMS:
            return BootMedium(place, mount.fstype, frozenset())
        names = disk_names_of_devnum(mount.devnum, sys_root) if mount.devnum[0] else set()
        return BootMedium(place, mount.fstype, frozenset(names))
    return NOT_LIVE


def boot_disks() -> frozenset[str]:
    """Kernel names of the disks the appliance booted from (empty when there is none, or
    when it cannot be known: not live, toram, network boot)."""
    return find_boot_medium().disks

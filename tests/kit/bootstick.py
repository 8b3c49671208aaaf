"""A boot stick as live-boot leaves it, on a loop device: a partition table libparted reads
as an Apple partition map ("mac", as it reads the appliance's hybrid ISO), and the medium's
filesystem mounted read-only at a folder that the appliance is told is live-boot's medium
mount (APPLIANCE_LIVE_MEDIUM, appliance/disk/bootmedium.py's seam).

This kernel has no iso9660 module, so the medium is ext4 in partition 2 of the map (parted
makes the map's own entry partition 1). Nothing here imports the appliance package.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kit.diskbuild import LoopAttacher, MiB, sparse_file
from kit.diskcompare import mounted, run

#: the environment variable that names the live medium's mount point to the appliance
SEAM = "APPLIANCE_LIVE_MEDIUM"
STICK_SIZE = 64 * MiB


@dataclass(frozen=True)
class BootStick:
    node: str  # the stick's loop device
    image: Path  # its backing file (to prove it was never written)
    medium: Path  # where its filesystem is mounted: the value for SEAM


@contextmanager
def boot_stick(loops: LoopAttacher, folder: Path, medium: Path) -> Iterator[BootStick]:
    """Make the stick in `folder`, mount its medium at `medium` (read-only, as live-boot
    does) while the block runs; the caller's `loops` detaches it afterwards."""
    image = sparse_file(folder, "boot-stick.img", STICK_SIZE)
    node = loops.attach(image)
    run("parted", "-s", node, "mklabel", "mac", "mkpart", "live", "ext4", "1MiB", "100%")
    run("partx", "-u", node)
    part = f"{node}p2"
    run("mkfs.ext4", "-q", "-L", "LIVE", part)
    with mounted(part, "ext4", readonly=True, mountpoint=medium) as where:
        yield BootStick(node, image, where)

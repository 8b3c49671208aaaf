"""Mounting a filesystem to read its files, never writing a byte and never replaying a
journal onto anything: ext2/3/4 `ro,noload`, xfs `ro,norecovery,nouuid`, btrfs
`ro,rescue=nologreplay`, NTFS with ntfs-3g `ro` (a hibernated or dirty NTFS mounts too: a
read-only ntfs-3g mount does not refuse it), FAT and exFAT with the kernel's driver when it
has one, else with Debian's FUSE readers (fusefat, exfat-fuse): this machine's kernel has
no vfat or exfat, the live system's has.

The device is always a read-only loop device too, so even a driver that tried to write
could not.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

from appliance.errors import ToolFailed, UnsupportedImage
from appliance.fs.kinds import KINDS
from appliance.tools import SBIN_PATH, run, which

SAFE = "nodev,nosuid,noexec"

#: filesystems whose files can be read here; FAT and exFAT fall back to FUSE readers
FUSE_READERS = {"vfat": ["fusefat", "-o", "ro"], "exfat": ["mount.exfat-fuse", "-o", "ro"]}
MOUNTABLE = frozenset(
    [name for name, kind in KINDS.items() if kind.read_only is not None] + list(FUSE_READERS)
)


def why_not_mountable(fstype: str | None, method: str | None = None) -> str | None:
    """One sentence saying why a partition's files cannot be read, or None when they can."""
    if method == "swap" or fstype == "swap":
        return "It is swap space, which holds no files."
    kind = KINDS.get(fstype or "")
    if kind is not None and kind.encrypted:
        return f"It is {kind.encrypted}-encrypted; its files cannot be read without unlocking it."
    if fstype == "LVM2_member":
        return "It is an LVM physical volume; mounting LVM volumes from an image is not supported."
    if fstype in ("linux_raid_member", "isw_raid_member", "ddf_raid_member"):
        return "It is part of a RAID set, which cannot be mounted on its own."
    if fstype is None:
        return "It holds no filesystem that the appliance recognises."
    if fstype not in MOUNTABLE:
        return f"Its {fstype} filesystem cannot be mounted by the appliance."
    return None


def kernel_has(fstype: str) -> bool:
    """Whether the running kernel knows `fstype` (built in, loaded, or as a module)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/filesystems").read_text().splitlines():
            if line.split()[-1:] == [fstype]:
                return True
    modprobe = shutil.which("modprobe") or shutil.which("modprobe", path=SBIN_PATH)
    if modprobe is None:
        return False
    probe = subprocess.run([modprobe, "-n", fstype], capture_output=True, check=False)
    return probe.returncode == 0


def mount_argv(node: str, fstype: str, where: str) -> list[str]:
    """The command that mounts `node` read-only at `where`."""
    kind = KINDS.get(fstype)
    if fstype in FUSE_READERS and not kernel_has(fstype):
        return [*FUSE_READERS[fstype], node, where]
    if kind is not None and kind.fuse:  # NTFS: ntfs-3g
        return ["ntfs-3g", "-o", f"{kind.read_only},{SAFE}", node, where]
    options = kind.read_only if kind is not None and kind.read_only else "ro"
    driver = kind.driver if kind is not None and kind.driver else fstype
    return ["mount", "-t", driver, "-o", f"{options},{SAFE}", node, where]


def mount_said(text: str) -> str:
    """mount(8)'s reason, without its "mount: DIR: " prefix and its hint to read dmesg."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith("dmesg(1)")]
    return (reasons or lines or [""])[0].rpartition(": ")[2].rstrip(".")


def mount_read_only(node: str, fstype: str, where: str, *, what: str) -> None:
    """Mount `node` (a read-only device) read-only at `where`; one sentence naming `what`
    when it cannot be done."""
    reason = why_not_mountable(fstype)
    if reason is not None:
        raise UnsupportedImage(f"{what[0].upper()}{what[1:]} cannot be mounted: {reason}")
    argv = mount_argv(node, fstype, where)
    which(argv[0])  # a missing FUSE reader names its package
    proc = run(argv, check=False, timeout=120)
    if proc.returncode != 0:
        if fstype == "btrfs":
            twin = mounted_twin(node)
            if twin is not None:
                raise ToolFailed(
                    f"The btrfs filesystem of {what} has the same UUID as {twin[0]}, mounted "
                    f"at {twin[1]}, and this kernel mounts only one btrfs of a UUID at once; "
                    f"unmount {twin[1]} first."
                )
        detail = mount_said(proc.stderr or proc.stdout) or f"exit code {proc.returncode}"
        raise ToolFailed(
            f"The {fstype} filesystem of {what} cannot be mounted read-only ({detail}); "
            "it may be damaged."
        )


def mounted_twin(node: str) -> tuple[str, str] | None:
    """A mounted btrfs with the UUID of the one on `node` (the image's source disk, still
    attached): its device and mount point. Kernels before 6.7 refuse the second one."""
    uuid = run(["blkid", "-o", "value", "-s", "UUID", node], check=False).stdout.strip()
    if not uuid:
        return None
    with contextlib.suppress(OSError), open("/proc/self/mounts") as table:
        for line in table:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "btrfs" and fields[0] != node:
                theirs = run(["blkid", "-o", "value", "-s", "UUID", fields[0]], check=False)
                if theirs.stdout.strip() == uuid:
                    return fields[0], fields[1].replace("\\040", " ")
    return None


def unmount(where: str, *, lazy_after: float = 10.0) -> bool:
    """Unmount `where`; a busy mount is retried, then detached lazily. Whether it was
    mounted."""
    if not is_mounted(where):
        return False
    deadline = time.monotonic() + lazy_after
    while time.monotonic() < deadline:
        if subprocess.run(["umount", where], capture_output=True, check=False).returncode == 0:
            return True
        if not is_mounted(where):
            return True
        time.sleep(0.2)
    subprocess.run(["umount", "--lazy", where], capture_output=True, check=False)
    return True


def is_mounted(where: str) -> bool:
    """Whether something is mounted at `where` (read from the mount table: a dead FUSE mount
    cannot be asked)."""
    target = where.encode().replace(b" ", b"\\040")
    with contextlib.suppress(OSError), open("/proc/self/mounts", "rb") as table:
        return any(line.split(b" ")[1:2] == [target] for line in table)
    return False

"""The external programs the engine uses, declared in one place, and one way to run them."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from appliance.errors import ToolFailed, ToolMissing

SBIN_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"

# program -> Debian package that provides it
TOOLS: dict[str, str] = {
    "sfdisk": "fdisk",
    "sgdisk": "gdisk",
    "partx": "util-linux",
    "blkid": "util-linux",
    "wipefs": "util-linux",
    "xz": "xz-utils",
    "zstd": "zstd",
    "mkswap": "util-linux",
    "blockdev": "util-linux",
    "losetup": "util-linux",
    "mkfs.ext4": "e2fsprogs",
    "mkfs.fat": "dosfstools",
    "mkfs.ntfs": "ntfs-3g",
    "ntfs-3g": "ntfs-3g",
    "mmd": "mtools",
    "ntfscat": "ntfs-3g",
    "ntfsinfo": "ntfs-3g",
    "ntfscluster": "ntfs-3g",
    "ntfsresize": "ntfs-3g",
    "resize2fs": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "xfs_repair": "xfsprogs",
    "ntfsfix": "ntfs-3g",
    "fsck.fat": "dosfstools",
    "fsck.exfat": "exfatprogs",
    "dumpe2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "xfs_growfs": "xfsprogs",
    "btrfs": "btrfs-progs",
    "mount": "mount",
    "umount": "mount",
    "mcopy": "mtools",
    "partclone.extfs": "partclone",
    "partclone.xfs": "partclone",
    "partclone.btrfs": "partclone",
    "partclone.ntfs": "partclone",
    "partclone.fat": "partclone",
    "partclone.exfat": "partclone",
    "qemu-img": "qemu-utils",
    "qemu-storage-daemon": "qemu-system-common",
    "setpriv": "util-linux",
    "sshfs": "sshfs",
    "ssh-keyscan": "openssh-client",
    "ssh-keygen": "openssh-client",
    "mount.cifs": "cifs-utils",
    "mount.nfs": "nfs-common",
    "udp-sender": "udpcast",
    "udp-receiver": "udpcast",
    "ip": "iproute2",
    "fusefat": "fusefat",
    "mount.exfat-fuse": "exfat-fuse",
}


def which(program: str) -> str:
    """The full path of `program`, or ToolMissing with the package to install."""
    found = shutil.which(program) or shutil.which(program, path=SBIN_PATH)
    if found is None:
        package = TOOLS.get(program, program)
        raise ToolMissing(
            f"The program {program} is missing; install the Debian package {package}."
        )
    return found


def missing_tools(programs: Sequence[str] | None = None) -> list[str]:
    """Names of the declared programs (or of `programs`) that are not installed."""
    names = list(programs) if programs is not None else list(TOOLS)
    return [
        name
        for name in names
        if shutil.which(name) is None and shutil.which(name, path=SBIN_PATH) is None
    ]


def run(
    args: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 600,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a program and capture its text output; ToolFailed with its message when it fails."""
    argv = [which(args[0]), *args[1:]]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, input=input_text, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolFailed(f"{args[0]} did not finish within {timeout:.0f} seconds.") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit code {proc.returncode}"
        raise ToolFailed(f"{args[0]} failed: {last}")
    return proc

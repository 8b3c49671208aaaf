"""Every guard between a user and a destroyed disk. Each check raises SafetyRefusal with one
sentence, before a byte is written.

Rules: never write to the source of the same job, the disk that holds the repository, the
disk the appliance booted from, or a disk with a mounted or in-use (swap, LVM, RAID, dm)
partition; never restore onto a disk that is too small or has another sector size.
"""

from __future__ import annotations

from pathlib import Path

from appliance.disk.bootmedium import boot_disks
from appliance.disk.model import Disk
from appliance.disk.usage import (
    disk_devnums,
    disks_of_path,
    holders,
    mounted_devnums,
    mounts,
    nearest_existing,
    swap_devnums,
)
from appliance.errors import SafetyRefusal
from appliance.fs.resize import end_orphaned_grow_mount
from appliance.units import human_size


def check_not_in_use(disk: Disk, role: str = "target") -> None:
    nums = disk_devnums(disk.name)
    mounts = mounted_devnums()
    # a grow step's mount left by a killed appliance is ours to end, not the user's
    if any(end_orphaned_grow_mount(mounts[num]) for num in sorted(nums & mounts.keys())):
        mounts = mounted_devnums()
    for num in sorted(nums):
        if num in mounts:
            raise SafetyRefusal(
                f"The {role} {disk.describe()} has a partition mounted at "
                f"{mounts[num]}; unmount it first."
            )
    if nums & swap_devnums():
        raise SafetyRefusal(
            f"The {role} {disk.describe()} holds active swap; turn it off with swapoff first."
        )
    users = holders(disk.name)
    if users:
        raise SafetyRefusal(
            f"The {role} {disk.describe()} is in use by {', '.join(users)} "
            "(LVM, RAID or device-mapper); stop that first."
        )


def boot_stick_refusal(disk: Disk) -> SafetyRefusal:
    """The one sentence for the disk the appliance booted from, whatever the job."""
    return SafetyRefusal(
        f"{disk.describe()} is the stick this appliance booted from; choose another disk."
    )


def check_not_boot_stick(disk: Disk) -> None:
    """Never read or write the disk the appliance booted from (probed as such, or found
    under the live medium now: a Disk made before the medium was looked at)."""
    if disk.boot_stick or disk.name in boot_disks():
        raise boot_stick_refusal(disk)


def check_not_repo_disk(disk: Disk, repo_path: Path, role: str = "target") -> None:
    if disk.name in disks_of_path(nearest_existing(repo_path)):
        raise SafetyRefusal(
            f"The {role} {disk.describe()} holds the repository {repo_path}; "
            "choose another disk or another repository."
        )


def check_target(
    target: Disk,
    *,
    source: Disk | None = None,
    repo_path: Path | None = None,
    needed_size: int | None = None,
    sector: int | None = None,
) -> None:
    """Every rule a disk that is about to be overwritten must pass."""
    check_not_boot_stick(target)  # first: the stick is read-only too, and that says less
    if source is not None and source.devnum == target.devnum:
        raise SafetyRefusal(
            f"The target {target.describe()} is the source of this job; choose another target."
        )
    if target.readonly:
        raise SafetyRefusal(f"The target {target.describe()} is read-only.")
    if repo_path is not None:
        check_not_repo_disk(target, repo_path)
    check_not_in_use(target)
    if sector is not None and sector != target.logical_sector:
        raise SafetyRefusal(
            f"The target {target.describe()} has {target.logical_sector}-byte "
            f"sectors and the image has {sector}-byte sectors; use a disk with "
            f"{sector}-byte sectors."
        )
    if needed_size is not None and target.size < needed_size:
        raise SafetyRefusal(
            f"The target {target.describe()} is too small: the image needs "
            f"{human_size(needed_size)} ({needed_size} bytes)."
        )


def check_source(source: Disk, repo_path: Path | None = None) -> None:
    """A save never writes its source (the repository may not live on it), and neither a save
    nor a clone reads a partition that is mounted read-write: the copy would be torn. The
    boot stick is not a source either: only its identity was probed."""
    check_not_boot_stick(source)
    if repo_path is not None:
        check_not_repo_disk(source, repo_path, role="source")
    mounts = mounted_devnums()
    writable = _writable_mounts()
    for num in sorted(disk_devnums(source.name)):
        if num in mounts and mounts[num] in writable:
            raise SafetyRefusal(
                f"The source {source.describe()} has a partition mounted "
                f"read-write at {mounts[num]}; unmount it (or mount it "
                "read-only) so the image is consistent."
            )


def _writable_mounts() -> set[str]:
    return {mount.point for mount in mounts() if "rw" in mount.options}

"""restore of a disk held in a file, with the clone's fit rules: a Windows system image's disk
(a VHDX or VHD in a WindowsImageBackup folder, named as `images` lists it), a VM disk file
(.qcow2 .vhd .vhdx .vmdk .vdi) or a raw .img, onto a disk of the same size, larger or smaller.

The file is attached as a read-only disk (appliance.shelf.filedisk: qemu's raw view of a VM
disk, a read-only loop device, its partitions told with partx), and from there it is a clone:
the same fit (filesystems grown onto a larger disk, NTFS/ext4 shrunk on a copy-on-write view
onto a smaller one when the used data fits), the same guards (never the boot stick, a mounted
disk, the disk that holds the file), the same steps, progress and verdict. The marker on the
target names the file, not the loop device.

Nothing is held open between the plan and the run: planning attaches the file, plans the
clone and lets go; the run attaches it again, checks that it still holds the layout that was
planned, and copies. A plan dropped at the confirmation leaves no loop device or raw view.

A Windows backup's disk file holds only the volumes that were backed up: a partition in which
blkid finds no filesystem is written as the file holds it (zeros where Windows saved nothing),
and the plan says so in one line per such partition.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from appliance.disk.marker import Marker
from appliance.disk.model import Disk
from appliance.disk.parttypes import type_name
from appliance.disk.probe import probe_disk
from appliance.disk.usage import disks_of_path
from appliance.errors import CorruptData, ImageError, SafetyRefusal, UsageError
from appliance.io.pipeline import read_windows
from appliance.jobs.clone import ClonePlan, clone_steps, plan_clone
from appliance.jobs.fitting import recheck_target
from appliance.jobs.plantext import PlanText, clone_layout, target_now
from appliance.jobs.writeplan import Step, describe_steps, execute, now_utc
from appliance.plan.safety import check_not_in_use, check_target
from appliance.progress import Phase, Progress
from appliance.shelf.filedisk import FileDisk, describe_file
from appliance.shelf.winbackup import BackupDisk, WindowsBackup, find_backup
from appliance.units import human_size

_DISK_SUFFIX = re.compile(r"^(.*) disk (\d+)$")


@dataclass
class FileRestorePlan:
    """A restore of a file's disk, planned and checked; nothing is open, nothing written."""

    file: Path  # the disk file that is read
    source: str  # what is written, in words ("Windows system image PC 2026-... disk 1 ...")
    name: str  # the image's name, for the target's marker and the verdict
    repo: str | None  # the folder a Windows system image was found in
    clone: ClonePlan  # the clone from the file's loop device (its node is the plan's only)
    windows: bool = False  # a Windows system image's disk: unformatted partitions were not saved
    disk: int | None = None  # which disk of the backup (1, 2, ...)

    @property
    def title(self) -> str:
        """The source in a few words: "Windows system image NAME", "VM disk file F (QCOW2)"."""
        return f"Windows system image {self.name}" if self.windows else describe_file(self.file)

    @property
    def target(self) -> Disk:
        return self.clone.target

    @property
    def total(self) -> int:
        return self.clone.total

    def unsaved(self) -> list[str]:
        """One line per partition of a Windows backup that holds no filesystem."""
        if not self.windows:
            return []
        src = self.clone.source
        return [
            f"partition {p.number} ({type_name(src.table, p.type.lower())}): no filesystem in "
            "the backup; written as the backup holds it (zeros where Windows saved nothing)"
            for p in src.partitions
            if p.kind != "extended" and p.fstype is None
        ]

    def marker(self) -> Marker:
        return Marker("restore", self.name, self.repo, str(self.file), now_utc())

    def to_json(self) -> dict[str, Any]:
        src = self.clone.source
        return {
            "command": "restore",
            "format": "windows_backup" if self.windows else "file",
            "image": self.name,
            "file": str(self.file),
            "disk": self.disk,
            "target": self.target.node,
            "target_size": self.target.size,
            "image_disk_size": src.size,
            "same_size": self.clone.fit.identity,
            "bytes": self.total,
            "fit": self.clone.fit.to_json(),
            "unsaved_partitions": [
                p.number
                for p in src.partitions
                if self.windows and p.kind != "extended" and p.fstype is None
            ],
        }


def plan_file_restore(
    file: str | Path, target: str, *, grow: int | None = None, progress: Progress | None = None
) -> FileRestorePlan:
    """`restore --file FILE TARGET`: a VM disk file or a raw image."""
    path = Path(file)
    return _plan(path, target, describe_file(path), path.name, None, grow, progress)


def find_windows_backup(repo: str, image: str) -> tuple[WindowsBackup, str | None] | None:
    """The Windows system image `images` names IMAGE in `repo`, and the disk named by an
    " disk N" ending of IMAGE (None: not named so); None when there is no such backup."""
    folder = Path(repo)
    backup = find_backup(folder, image)
    if backup is not None:
        return backup, None
    match = _DISK_SUFFIX.match(image)
    if match is not None:
        backup = find_backup(folder, match.group(1))
        if backup is not None:
            return backup, match.group(2)
    return None


def pick_disk(backup: WindowsBackup, disk: str | None) -> tuple[int, BackupDisk]:
    """The backup's disk named by number (1, 2... as `images` lists them) or file name."""
    disks = list(backup.disks)
    if disk is None:
        if len(disks) == 1:
            return 1, disks[0]
        listed = ", ".join(
            f"disk {n}: {d.file.name} ({human_size(d.size)})" for n, d in enumerate(disks, 1)
        )
        raise UsageError(
            f"The Windows system image {backup.name} holds {len(disks)} disks ({listed}); "
            f"name one with --disk 1 to {len(disks)}."
        )
    for number, item in enumerate(disks, 1):
        if disk in (str(number), item.file.name):
            return number, item
    raise UsageError(
        f"The Windows system image {backup.name} has no disk {disk}; it holds "
        f"{len(disks)} (--disk 1 to {len(disks)}, or a file name as `images` lists it)."
    )


def plan_backup_restore(
    repo: str,
    backup: WindowsBackup,
    target: str,
    *,
    disk: str | None = None,
    grow: int | None = None,
    progress: Progress | None = None,
) -> FileRestorePlan:
    """`restore --repo DIR --image NAME [--disk N] TARGET` of a Windows system image."""
    if backup.problem is not None:
        raise ImageError(
            f"The Windows system image {backup.name} cannot be restored: {backup.problem}"
        )
    number, item = pick_disk(backup, disk)
    name = backup.name if len(backup.disks) == 1 else f"{backup.name} disk {number}"
    source = (
        f"Windows system image {name}, {item.file.name} ({item.format}, {human_size(item.size)})"
    )
    plan = _plan(item.file, target, source, name, repo, grow, progress)
    plan.windows, plan.disk = True, number
    return plan


def _check_not_file_disk(target: Disk, file: Path) -> None:
    """Never the disk that holds the file, nor a loop device over the file itself."""
    backing = target.backing_file
    if target.name in disks_of_path(file.resolve()) or (
        backing is not None and Path(backing).resolve() == file.resolve()
    ):
        raise SafetyRefusal(
            f"The target {target.describe()} holds the file {file}; choose another disk."
        )


def _plan(
    file: Path,
    target: str,
    source: str,
    name: str,
    repo: str | None,
    grow: int | None,
    progress: Progress | None,
) -> FileRestorePlan:
    dst = probe_disk(target)
    check_target(dst)
    _check_not_file_disk(dst, file)
    with FileDisk(file) as attached:
        planned = plan_clone(attached.node, dst.node, grow=grow, progress=progress)
        src = planned.source
        if src.table is None:
            raise ImageError(f"{file.name} holds no partition table: it is not a disk image.")
    planned.label = f"restoring {name}"
    return FileRestorePlan(file, source, name, repo, planned)


def _layout(disk: Disk) -> list[tuple[int, int, int, str | None]]:
    return [(p.number, p.start, p.size, p.fstype) for p in disk.partitions]


def attach_plan(plan: FileRestorePlan, node: str) -> ClonePlan:
    """The planned clone, reading from `node` (the file attached again for the run): the file
    must still hold the disk that was planned."""
    src = probe_disk(node)
    old = plan.clone.source
    if (src.size, src.table, _layout(src)) != (old.size, old.table, _layout(old)):
        raise ImageError(
            f"{plan.file.name} no longer holds the disk that was planned; plan the restore again."
        )
    return replace(plan.clone, source=src)


def file_restore_steps(plan: FileRestorePlan, clone: ClonePlan | None = None) -> list[Step]:
    """Every step, in order (printed by --dry-run): the clone's, with a restore marker."""
    clone = clone or plan.clone
    return clone_steps(clone, clone.target, plan.marker())


def read_through(
    clone: ClonePlan, *, progress: Progress, cancel: threading.Event | None = None
) -> None:
    """Read every byte the restore will copy, before the first write: a damaged VM disk file
    whose data cannot be read stops the job here, with its target untouched."""
    progress.set_phase(Phase.CHECK, f"reading {clone.label.removeprefix('restoring ')} through")
    with clone.image_source() as source:
        for number, region in enumerate(source.regions):
            bad: list[tuple[int, int]] = []
            read_windows(
                source.fd,
                region.windows(number),
                lambda _win, _view: None,
                sector=source.sector,
                progress=progress,
                cancel=cancel,
                bad=bad,
            )
            if bad:
                raise CorruptData(
                    f"{region.what} cannot be read from the file: {len(bad)} unreadable "
                    f"part(s), the first at byte {bad[0][0]}; nothing was written."
                )


def restore_file(
    plan: FileRestorePlan,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    verify_first: bool = False,
) -> None:
    """Attach the file again and run the planned clone from it onto the target; the loop
    device and the raw view are released on every way out (an error, Ctrl-C, a cancel)."""
    progress = progress or Progress()
    with FileDisk(plan.file) as attached:
        clone = attach_plan(plan, attached.node)
        target = recheck_target(plan.target)
        check_target(target, source=clone.source, sector=clone.source.logical_sector)
        _check_not_file_disk(target, plan.file)
        check_not_in_use(target)
        # one bar for the job: the read-through (when asked for), then the copy
        progress.total = clone.total * (2 if verify_first else 1)
        if verify_first:
            read_through(clone, progress=progress, cancel=cancel)
        before = progress.done
        steps = file_restore_steps(plan, replace(clone, target=target))
        execute(
            steps,
            target,
            progress=progress,
            cancel=cancel,
            workers=workers,
            table=clone.source.table,
            unreadable_stops=f"The file {plan.file}",
        )
    progress.set_phase(
        Phase.DONE,
        f"{plan.title} restored onto {target.node} "
        f"({human_size(progress.done - before)} of used data)",
    )


def file_restore_text(plan: FileRestorePlan) -> PlanText:
    return PlanText(
        "restore",
        plan.source,
        plan.target.describe(),
        target_now(plan.target),
        (*clone_layout(plan.clone), *plan.unsaved()),
        tuple(describe_steps(file_restore_steps(plan))),
    )

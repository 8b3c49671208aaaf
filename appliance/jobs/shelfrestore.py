"""restore of a Clonezilla (or Rescuezilla) image folder, through the same write plan, fit
rules and safety checks as an image of our repository.

What Clonezilla's own restore does, done here as printable steps (facts from its
ocs-functions): the table is the folder's sfdisk dump with `last-lba` dropped, written by
sfdisk for the target's size (so a GPT's backup lands at the target's real end, and EBRs are
made new); LBA 0's boot code comes from `DISK-mbr`, the sectors after the MBR from
`DISK-hidden-data-after-mbr`, an extended partition's boot code from `PART-ebr`; each
partition is streamed from its partclone or raw stream; swap is recreated with the UUID and
label of `swappt-PART.info`. One thing Clonezilla leaves damaged is done right: partclone
never saves NTFS's backup boot sector (the volume's last sector is outside its bitmap), so
it is rebuilt from the primary one.

A smaller target is accepted when the partitions end before its end; shrinking a
filesystem of a Clonezilla image is not supported (a sentence says so before any write).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from appliance.disk.blockio import aligned_buffer, close_buffer, flush
from appliance.disk.marker import Marker
from appliance.disk.model import Disk
from appliance.disk.probe import probe_disk
from appliance.errors import Cancelled, ImageError, SafetyRefusal
from appliance.fs import check as fscheck
from appliance.fs.ntfs import BOOT_SIZE, parse_boot_sector
from appliance.io.clonezillasource import ClonezillaSource
from appliance.io.pipeline import Placement, write_windows
from appliance.jobs.fitting import (
    PartInfo,
    finishing_steps,
    kernel_parts,
    needs_shrink,
    recheck_target,
)
from appliance.jobs.plantext import PlanText, target_now
from appliance.jobs.writeplan import (
    AddPartitions,
    Context,
    Flush,
    MarkIncomplete,
    Step,
    TableSectors,
    TellKernel,
    WipeSignatures,
    WriteTableLast,
    describe_steps,
    execute,
    now_utc,
)
from appliance.plan.fit import GROWABLE_FS, FitPlan, SourcePart, fit
from appliance.plan.safety import check_target
from appliance.plan.table import table_sectors
from appliance.progress import Phase, Progress
from appliance.shelf import clonezilla
from appliance.shelf.clonezilla import ClonezillaImage
from appliance.units import human_size


@dataclass
class ShelfRestorePlan:
    image: ClonezillaImage
    disk: clonezilla.Disk
    source: ClonezillaSource
    target: Disk
    fit: FitPlan
    source_size: int
    warnings: list[str] = field(default_factory=list)  # what the restore's checks found

    @property
    def total(self) -> int:
        return sum(size for r in self.source.regions for _, size in r.used)

    @property
    def same_size(self) -> bool:
        return self.fit.identity

    def table_json(self) -> dict[str, Any]:
        return self.disk.sfdisk_json(self.image.name)

    def close(self) -> None:
        self.source.close()


def _source_size(disk: clonezilla.Disk) -> int:
    """The saved disk's size: pt.parted's, else the GPT's last usable sector plus its backup
    area, else where the last partition ends."""
    if disk.size:
        return disk.size
    if "last-lba" in disk.header:
        return (int(disk.header["last-lba"]) + 34) * disk.sector_size
    return disk.used_end


def plan_shelf_restore(folder: Path, target: str, grow: int | None = None) -> ShelfRestorePlan:
    image = clonezilla.load(folder)
    disk = image.one_disk("restore")
    missing = [p.name for p in disk.partitions if p.method == "none" and p.fstype != "swap"]
    if any(n in image.parts for n in missing):
        raise ImageError(
            f"The Clonezilla image {image.name} is incomplete: no stream holds "
            f"{', '.join(n for n in missing if n in image.parts)}."
        )
    node = probe_disk(target)
    check_target(node, repo_path=folder, sector=disk.sector_size)
    size = _source_size(disk)
    parts = [
        SourcePart(
            p.number,
            "extended"
            if p.extended
            else ("logical" if p.number > 4 and disk.label == "dos" else "primary"),
            p.type,
            p.start,
            p.size,
            p.fstype,
        )
        for p in disk.partitions
    ]
    if needs_shrink(parts, disk.label, node.size, disk.sector_size):
        raise SafetyRefusal(
            f"The target {node.describe()} is too small for the Clonezilla image "
            f"{image.name}: its partitions end at {human_size(disk.used_end)}, and shrinking "
            "a filesystem of a Clonezilla image is not supported; use a larger target."
        )
    fitted = fit(
        parts,
        table=disk.label,
        source_size=size,
        target_size=node.size,
        sector=disk.sector_size,
        grow=grow,
    )
    source = ClonezillaSource(image, disk)  # reads each partclone header and bitmap now
    return ShelfRestorePlan(image, disk, source, node, fitted, size)


@dataclass
class BootArea(Step):
    """The saved boot code of LBA 0 (kept for the last step, the table is written around
    it) and the hidden data between the MBR and the first partition."""

    mbr: Path | None
    hidden: Path | None
    limit: int  # where the first partition starts on the target

    def describe(self) -> str:
        what = ["the saved boot code (LBA 0, bytes 0-439, held back)"] if self.mbr else []
        if self.hidden is not None:
            what.append("the hidden data after the MBR")
        return "write " + " and ".join(what)

    def run(self, ctx: Context) -> None:
        ctx.progress.set_phase(Phase.TABLE, f"writing the boot area of {ctx.target.node}")
        if self.mbr is not None:
            ctx.keep(0, self.mbr.read_bytes()[:440])
        if self.hidden is not None:
            sector = ctx.sector
            data = self.hidden.read_bytes()[: max(0, self.limit - sector)]
            data = data[: len(data) // sector * sector]
            now, later = ctx.split(sector, [(0, len(data))])
            for start, length in now:
                ctx.put(sector + start, data[start : start + length])
            for start, length in later:
                ctx.keep(sector + start, data[start : start + length])


@dataclass
class EbrBootCode(Step):
    """The boot code Clonezilla saved with an extended partition's first EBR (bytes 0-445),
    over the EBR sfdisk wrote (whose entries follow the fitted layout)."""

    number: int
    path: Path
    offset: int  # the extended partition's start on the target

    def describe(self) -> str:
        return f"write the saved boot code of the extended partition {self.number}'s EBR"

    def run(self, ctx: Context) -> None:
        code = self.path.read_bytes()[:446]
        sector = bytearray(_read(ctx, self.offset, ctx.sector))
        sector[: len(code)] = code
        ctx.put(self.offset, bytes(sector))


def _read(ctx: Context, offset: int, length: int) -> bytes:
    buf = aligned_buffer(max(length, 4096))
    try:
        with memoryview(buf) as view:  # released on every way out: close() needs that
            got = os.preadv(ctx.fd, [view[:length]], offset)
            return bytes(view[:got])
    finally:
        close_buffer(buf)


@dataclass
class ShelfPartition(Step):
    """Stream one partition from its partclone or raw stream to its place on the target;
    bytes on held-back sectors are kept for the last step."""

    plan: ShelfRestorePlan = field(repr=False)
    region: int

    def describe(self) -> str:
        src = self.plan.source.regions[self.region]
        used = sum(n for _, n in src.used)
        assert src.partition is not None
        start = self.plan.fit.new_start(src.partition)
        return f"write {src.what}: {human_size(used)} used, at byte {start}"

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "region": self.plan.source.regions[self.region].name}

    def run(self, ctx: Context) -> None:
        source = self.plan.source
        src = source.regions[self.region]
        assert src.partition is not None
        base = self.plan.fit.new_start(src.partition)
        later: dict[int, list[tuple[int, int]]] = {}

        def placements() -> Any:
            for win in src.windows(self.region, base=base):
                now, held = ctx.split(win.offset, win.used)
                if held:
                    later[win.offset] = held
                yield Placement(self.region, win.offset, win.length, tuple(now), str(win.number))

        def fetch(number: str) -> bytes:
            return source.read_window(self.region, int(number)) or b""

        def decode(place: Placement, blob: bytes | memoryview, out: memoryview) -> None:
            for start, length in later.get(place.offset, ()):
                ctx.keep(place.offset + start, blob[start : start + length], count=True)
            out[: len(blob)] = blob
            if len(blob) < len(out):  # a window the source does not hold reads as zeros
                out[len(blob) :] = bytes(len(out) - len(blob))

        ctx.progress.set_phase(Phase.RESTORE, f"restoring {src.what} onto {ctx.target.node}")
        write_windows(
            ctx.fd,
            placements(),
            fetch,
            decode,
            progress=ctx.progress,
            cancel=ctx.cancel,
            workers=ctx.workers,
        )


@dataclass
class NtfsBackupBoot(Step):
    """NTFS keeps a copy of its boot sector in the sector after the volume; partclone never
    saves it (it is outside the bitmap), so it is written here from the restored primary."""

    number: int
    start: int  # the partition's start on the target
    size: int  # its size on the target

    def describe(self) -> str:
        return (
            f"rebuild the NTFS backup boot sector of partition {self.number} from its "
            "primary one (partclone does not save it)"
        )

    def run(self, ctx: Context) -> None:
        primary = _read(ctx, self.start, BOOT_SIZE)
        boot = parse_boot_sector(primary)
        if boot is None:
            raise ImageError(
                f"Partition {self.number} was restored without an NTFS boot sector; "
                "the image's NTFS stream is damaged."
            )
        offset = boot.backup_offset
        if offset + BOOT_SIZE > self.size:
            return  # no room after the volume: there is no backup to write
        now, later = ctx.split(self.start + offset, [(0, BOOT_SIZE)])
        for begin, length in now:
            ctx.put(self.start + offset + begin, primary[begin : begin + length])
        for begin, length in later:
            ctx.keep(self.start + offset + begin, primary[begin : begin + length])


@dataclass
class CheckRestored(Step):
    """Each restored filesystem's own checker, read-only, before the table is made valid. An
    image of another tool was never proven (ours are, when saved): partclone's used-block
    map of btrfs has been wrong, and such an image restores a filesystem that does not
    mount. What a checker finds is said as a warning; the disk holds what the image holds."""

    writes: ClassVar[bool] = False
    parts: tuple[tuple[int, str], ...]  # (number, fstype)
    image: str
    warnings: list[str]

    def describe(self) -> str:
        numbers = ", ".join(str(number) for number, _ in self.parts)
        return f"check the restored filesystems ({numbers}) with their own checkers, read-only"

    def run(self, ctx: Context) -> None:
        for number, fstype in self.parts:
            if ctx.cancel is not None and ctx.cancel.is_set():
                raise Cancelled("Stopped by the user; the disk is marked as not restored.")
            ctx.progress.set_phase(Phase.CHECK, f"checking partition {number} ({fstype})")
            node = ctx.nodes[number]
            fd = os.open(node, os.O_RDONLY)  # its page cache may predate the copy: drop it
            try:
                flush(fd)
            finally:
                os.close(fd)
            result = fscheck.check(node, fstype, is_file=False)
            if result.result == "failed":
                self.warnings.append(
                    f"Clonezilla image {self.image} holds a damaged {fstype} in partition "
                    f"{number}: {result.tool} fails on it after the restore ({result.detail})."
                )


def shelf_restore_steps(plan: ShelfRestorePlan, target: Disk | None = None) -> list[Step]:
    """Every step, in order (printed by --dry-run, run by the restore)."""
    target = target or plan.target
    disk, fitp = plan.disk, plan.fit
    sector = disk.sector_size
    marker = Marker("restore", plan.image.name, str(plan.image.path), disk.name, now_utc())
    first = min((fitp.new_start(p.number) for p in disk.partitions), default=0)
    steps: list[Step] = [
        MarkIncomplete(marker),
        WipeSignatures(tuple(p.node for p in target.partitions if p.kind != "extended")),
    ]
    mbr, hidden = disk.boot.get("mbr"), disk.boot.get("hidden-data-after-mbr")
    if mbr is not None or hidden is not None:
        steps.append(BootArea(mbr, hidden if disk.label == "dos" else None, first))
    table = plan.table_json()
    steps.append(TableSectors(disk.label, lambda: table_sectors(table, fitp, target.size, sector)))
    ebr = disk.boot.get("ebr")
    extended = next((p for p in disk.partitions if p.extended), None)
    if ebr is not None and extended is not None and any(ebr.read_bytes()[:446]):
        steps.append(EbrBootCode(extended.number, ebr, fitp.new_start(extended.number)))
    parts = kernel_parts(fitp)
    if parts:
        steps.append(AddPartitions(parts))
    steps += [ShelfPartition(plan, i) for i in range(len(plan.source.regions))]
    steps += [
        NtfsBackupBoot(p.number, fitp.new_start(p.number), fitp.part(p.number).new_size)
        for p in disk.partitions
        if p.fstype == "ntfs" and p.method == "partclone"
    ]
    steps += finishing_steps(
        fitp,
        [
            PartInfo(p.number, p.fstype, p.swap_label, p.swap_uuid, p.method)
            for p in disk.partitions
            if not p.extended
        ],
    )
    checked = tuple(
        (p.number, p.fstype)
        for p in disk.partitions
        if p.method == "partclone" and p.fstype and fscheck.checker_for(p.fstype) is not None
    )
    if checked:
        steps.append(CheckRestored(checked, plan.image.name, plan.warnings))
    return [*steps, Flush(), WriteTableLast(), TellKernel()]


def shelf_restore(
    plan: ShelfRestorePlan,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
) -> list[str]:
    """Restore; the warnings are what the checks of the restored filesystems found."""
    progress = progress or Progress()
    target = recheck_target(plan.target)  # the disk may have changed since the plan
    check_target(target, repo_path=plan.image.path, sector=plan.disk.sector_size)
    progress.total = plan.total
    steps = shelf_restore_steps(plan, target)
    execute(steps, target, progress=progress, cancel=cancel, workers=workers, table=plan.disk.label)
    progress.set_phase(Phase.DONE, f"{plan.image.name} restored onto {target.node}")
    return list(plan.warnings)


def shelf_restore_text(plan: ShelfRestorePlan) -> PlanText:
    img, disk = plan.image, plan.disk
    source = (
        f"{img.kind.lower()} {img.name}, saved {img.date[:16].replace('T', ' ')} from "
        f"{disk.name} ({human_size(plan.source_size)}), {human_size(plan.total)} of data"
    )
    layout = [f"{disk.label.upper()} partition table"]
    end = 0
    for p in disk.partitions:
        fitted = plan.fit.part(p.number)
        change = ""
        if fitted.new_size > fitted.old_size:
            change = f", grown from {human_size(fitted.old_size)}"
            if p.fstype in GROWABLE_FS:
                change += "; the filesystem grows"
        elif fitted.new_start != fitted.old_start:
            change = ", moved"
        what = "extended" if p.extended else (p.fstype or "unformatted")
        end = max(end, fitted.new_start + fitted.new_size)
        layout.append(
            f"partition {p.number}: {human_size(fitted.new_size)} {what} ({p.method}{change})"
        )
    spare = plan.target.size - end - 1024 * 1024
    if end and spare > 0:
        layout.append(f"{human_size(spare)} at the end stay unallocated")
    return PlanText(
        "restore",
        source,
        plan.target.describe(),
        target_now(plan.target),
        tuple(layout),
        tuple(describe_steps(shelf_restore_steps(plan))),
    )


def shelf_plan_json(plan: ShelfRestorePlan) -> dict[str, object]:
    return {
        "command": "restore",
        "image": plan.image.name,
        "format": "clonezilla",
        "target": plan.target.node,
        "target_size": plan.target.size,
        "image_disk_size": plan.source_size,
        "same_size": plan.same_size,
        "bytes": plan.total,
        "fit": plan.fit.to_json(),
    }


def check_streams(
    plan: ShelfRestorePlan, *, progress: Progress, cancel: threading.Event | None = None
) -> None:
    """Read every partition's stream to its end before anything is written (--verify-first):
    every partclone checksum checked, a cut or damaged stream found first."""
    progress.total = plan.total
    progress.set_phase(Phase.VERIFY, f"checking the streams of {plan.image.name}")
    with ClonezillaSource(plan.image, plan.disk) as source:
        for number, region in enumerate(source.regions):
            for win in region.windows(number):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("Stopped by the user; nothing was written.")
                source.read_window(number, win.number)
                progress.add(win.used_bytes)
    progress.total = 0

"""What a restore or a clone will do, in lines: the one rendering of a write plan.

The command line (its confirmation and `--dry-run`), the unattended mode and the full-screen
interface all describe a plan with these lines; they only style them (indent, wrap, colour).
Every line is a fact from the plan: what is written (an image or another disk), the target
and what it holds now (all of it erased), the partitions it will hold, how each one is placed,
and the numbered steps that will run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from appliance.disk.fsprobe import whole_disk_filesystem
from appliance.disk.model import Disk
from appliance.jobs.restore import RestorePlan, restore_steps
from appliance.jobs.writeplan import describe_steps
from appliance.plan.fit import GROWABLE_FS, FitPlan
from appliance.repo.manifest import Manifest, Region
from appliance.units import human_size, rate

if TYPE_CHECKING:  # clone is optional in a build (the interface asks before it offers it)
    from appliance.jobs.clone import ClonePlan


@dataclass(frozen=True)
class PlanText:
    """A restore or clone plan as lines, none of them styled."""

    job: str  # "restore" or "clone"
    source: str  # what is written: "image pc1, saved ... of data" or "a copy of <disk>"
    target: str  # the disk that is erased, as people name it
    target_now: tuple[str, ...]  # what the target holds now
    layout: tuple[str, ...]  # the table and the partitions the target will hold, each
    # placed: unchanged, moved, grown or shrunk
    steps: tuple[str, ...]  # "1. ...": exactly the steps that will run


def target_now(target: Disk) -> tuple[str, ...]:
    """What the target holds now, a line each (it probes a disk with no table for a
    filesystem on the whole disk)."""
    whole = whole_disk_filesystem(target.node, target.table)
    return holds_now(target, f"{whole.type} {whole.label or ''}".rstrip() if whole else None)


def holds_now(target: Disk, whole: str | None) -> tuple[str, ...]:
    """What the target holds now, a line each: an interrupted job, a whole-disk filesystem
    (`whole`: "ext4 DATA"), its partitions, or nothing."""
    lines: list[str] = []
    if target.incomplete:
        lines.append(
            f"an {target.incomplete} (no valid partition table; this job writes it again "
            "from the start)"
        )
    if whole is not None:
        lines.append(f"a filesystem on the whole disk (no partition table): {whole}")
    elif not target.partitions and not target.incomplete:
        lines.append("no partitions")
    for part in target.partitions:
        lines.append(
            f"partition {part.number}: {human_size(part.size)} "
            f"{part.fstype or ''} {part.label or ''}".rstrip()
        )
    return tuple(lines)


def layout_lines(
    table: str | None, regions: Sequence[Region], fitted: FitPlan | None, target_size: int
) -> tuple[str, ...]:
    """The table and a line per partition the target will hold, in the fitted sizes."""
    lines = [f"{(table or 'no').upper()} partition table"]
    end = 0
    for region in regions:
        if region.partition is None:
            continue
        label = f" {region.label}" if region.label else ""
        size, start, change = region.size, region.start, ""
        if fitted is not None and fitted.parts:
            part = fitted.part(region.partition)
            size, start = part.new_size, part.new_start
            if part.new_size > part.old_size:
                change = f", grown from {human_size(part.old_size)}"
                if region.fstype in GROWABLE_FS:
                    change += "; the filesystem grows"
            elif part.new_size < part.old_size:
                change = f", shrunk from {human_size(part.old_size)}; the filesystem shrinks"
            elif part.new_start != part.old_start:
                change = ", moved"
        end = max(end, start + size)
        lines.append(
            f"partition {region.partition}: {human_size(size)} "
            f"{region.fstype or 'unformatted'}{label} ({region.method}{change})"
        )
    spare = target_size - end - 1024 * 1024
    if end and spare > 0:
        lines.append(f"{human_size(spare)} at the end stay unallocated")
    return tuple(lines)


def image_source(manifest: Manifest) -> str:
    """The image as the source of a restore: its name, when and from which disk it was saved."""
    disk = manifest.disk
    serial = f", serial {disk.serial}" if disk.serial else ""
    return (
        f"image {manifest.name}, saved {manifest.created[:16].replace('T', ' ')} from "
        f"{disk.what}{serial} ({human_size(disk.size)}), "
        f"{human_size(manifest.used_bytes)} of data"
    )


def saved_lines(
    manifest: Manifest, seconds: float, what: str | None = None, verb: str = "Saved"
) -> tuple[str, ...]:
    """What a finished save (or import) did, in the words the command line, the TUI and the
    unattended console all print (warnings are printed apart, each front end its own way)."""
    stats = manifest.figures
    return (
        f"{verb} {what or manifest.disk.what} as image {manifest.name}: "
        f"{rate(stats.used_bytes, seconds)}.",
        f"{human_size(stats.new_bytes)} stored in {stats.new_chunks} new chunks; "
        f"{stats.reused_chunks} chunks were already in the repository.",
    )


def restore_layout(plan: RestorePlan) -> tuple[str, ...]:
    manifest = plan.image.manifest
    table = manifest.table.type if manifest.table else None
    return layout_lines(table, manifest.regions, plan.fit, plan.target.size)


def clone_layout(plan: ClonePlan) -> tuple[str, ...]:
    """The layout a clone writes, in the same words and sizes as a restore's."""
    regions = [r.region for r in plan.regions]
    return layout_lines(plan.source.table, regions, plan.fit, plan.target.size)


def restore_text(plan: RestorePlan) -> PlanText:
    return PlanText(
        "restore",
        image_source(plan.image.manifest),
        plan.target.describe(),
        target_now(plan.target),
        restore_layout(plan),
        tuple(describe_steps(restore_steps(plan))),
    )


def clone_text(plan: ClonePlan) -> PlanText:
    from appliance.jobs.clone import clone_steps

    return PlanText(
        "clone",
        f"a copy of {plan.source.describe()}",
        plan.target.describe(),
        target_now(plan.target),
        clone_layout(plan),
        tuple(describe_steps(clone_steps(plan))),
    )

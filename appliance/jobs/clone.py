"""clone: disk to disk through the same pipeline as save (used data only, no repository),
onto a target of the same size, larger or smaller.

The source is only ever read: a partition that must shrink is shrunk on a copy-on-write view
of it (appliance.io.cowview), never in place.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from appliance.disk.marker import Marker
from appliance.disk.model import Disk
from appliance.disk.probe import probe_disk, probe_source
from appliance.io.source import DiskSource, SourceRegion
from appliance.jobs.fitting import (
    PartInfo,
    ShrinkCopy,
    copy_held,
    finishing_steps,
    kernel_parts,
    needs_shrink,
    recheck_target,
    with_min_sizes,
)
from appliance.jobs.save import RegionPlan, plan_regions
from appliance.jobs.savechecks import unreadable_warnings
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
    execute,
    now_utc,
)
from appliance.plan.fit import FitPlan, SourcePart, fit
from appliance.plan.safety import check_not_in_use, check_source, check_target
from appliance.plan.table import read_sfdisk_json, table_sectors
from appliance.progress import Phase, Progress
from appliance.units import human_size


@dataclass
class ClonePlan:
    source: Disk
    target: Disk
    fit: FitPlan
    regions: list[RegionPlan]
    label: str = ""  # what the progress lines say is done ("restoring X"), when not a clone
    unreadable: list[tuple[int, int]] = field(default_factory=list)  # once run: read as zeros

    @property
    def total(self) -> int:
        return sum(r.region.used_bytes for r in self.regions)

    def image_source(self) -> DiskSource:
        """The source disk as an image source: its regions and used ranges, read with
        O_DIRECT (close it, or use it as a context manager)."""
        return DiskSource(
            self.source.node,
            self.source.logical_sector,
            [SourceRegion.of(r.region, r.used) for r in self.regions],
        )

    def describe(self) -> list[str]:
        lines = [
            f"Clone {self.source.describe()}",
            f"onto {self.target.describe()} (everything on it is erased):",
        ]
        return lines + [f"  {line}" for line in self.fit.describe()]

    def to_json(self) -> dict[str, Any]:
        return {
            "command": "clone",
            "source": self.source.node,
            "target": self.target.node,
            "bytes": self.total,
            "fit": self.fit.to_json(),
        }


def _view_args(source: Disk, number: int) -> dict[str, Any]:
    part = source.partition(number)
    assert part is not None
    return {"device": source.node, "offset": part.start}


def plan_clone(
    source: str, target: str, grow: int | None = None, progress: Progress | None = None
) -> ClonePlan:
    src = probe_source(source)
    dst = probe_disk(target)
    check_target(dst, source=src, sector=src.logical_sector)
    check_source(src)
    parts = [
        SourcePart(p.number, p.kind, p.type, p.start, p.size, p.fstype) for p in src.partitions
    ]
    if needs_shrink(parts, src.table, dst.size, src.logical_sector):
        parts = with_min_sizes(parts, lambda p: _view_args(src, p.number), grow=grow)
    plan_fit = fit(
        parts,
        table=src.table,
        source_size=src.size,
        target_size=dst.size,
        sector=src.logical_sector,
        grow=grow,
    )
    regions = plan_regions(src, progress or Progress())
    return ClonePlan(src, dst, plan_fit, regions)


@dataclass
class DiskRegion(Step):
    """Copy one region of the source disk (the boot area, or a partition) to its place on
    the target; bytes that fall on held-back sectors are kept for last."""

    plan: ClonePlan = field(repr=False)
    index: int  # into plan.regions

    def describe(self) -> str:
        region = self.plan.regions[self.index].region
        if region.partition is None:
            if self.plan.source.table is None:
                return "copy the whole disk (its first MiB held back)"
            what = "table and boot areas" if self.plan.fit.identity else "boot area"
            return f"copy the source's {what} (LBA 0, 1 and last held back)"
        start = self.plan.fit.new_start(region.partition)
        return f"copy {region.describe()}: {human_size(region.used_bytes)} used, at byte {start}"

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "region": self.plan.regions[self.index].region.name}

    def run(self, ctx: Context) -> None:
        src, fitp = self.plan.source, self.plan.fit
        doing = self.plan.label or f"cloning {src.node}"
        ctx.progress.set_phase(Phase.CLONE, f"{doing} onto {ctx.target.node}")
        with self.plan.image_source() as source:
            region = source.regions[self.index]
            if region.partition is None:
                head_end = min((p.start for p in src.partitions), default=src.size)
                used = (
                    list(region.used)
                    if fitp.identity
                    else [(s, min(n, head_end - s)) for s, n in region.used if s < head_end]
                )
                # onto another size only the boot area is copied: the total counted it all
                ctx.progress.adjust_total(
                    sum(n for _, n in used) - self.plan.regions[self.index].region.used_bytes
                )
                copy_held(ctx, source.fd, 0, 0, used, src.size)
            else:
                copy_held(
                    ctx,
                    source.fd,
                    region.start,
                    fitp.new_start(region.partition),
                    list(region.used),
                    region.size,
                )


def clone_steps(
    plan: ClonePlan, target: Disk | None = None, marker: Marker | None = None
) -> list[Step]:
    """Every step of the clone, in order (printed by --dry-run, run by clone); `marker`: what
    the target's first sector names while it runs, when not a clone of the source disk."""
    target = target or plan.target
    src, fitp = plan.source, plan.fit
    marker = marker or Marker("clone", None, None, src.node, now_utc())
    steps: list[Step] = [
        MarkIncomplete(marker),
        WipeSignatures(tuple(p.node for p in target.partitions if p.kind != "extended")),
        DiskRegion(plan, 0),
    ]
    if not fitp.identity and src.table:
        steps.append(
            TableSectors(
                src.table,
                lambda: table_sectors(
                    read_sfdisk_json(src.node), fitp, target.size, src.logical_sector
                ),
            )
        )
    parts = kernel_parts(fitp)
    if parts:
        steps.append(AddPartitions(parts))
    steps += [
        DiskRegion(plan, index)
        for index, rplan in enumerate(plan.regions)
        if index and rplan.region.partition not in fitp.shrunk
    ]
    used = {r.region.partition: r.region.used_bytes for r in plan.regions}
    steps += [
        ShrinkCopy(fitp, number, _view_args(src, number), used[number]) for number in fitp.shrunk
    ]
    steps += finishing_steps(
        fitp,
        [
            PartInfo(
                r.region.partition, r.region.fstype, r.region.label, r.region.uuid, r.region.method
            )
            for r in plan.regions[1:]
            if r.region.partition is not None
        ],
    )
    return [*steps, Flush(), WriteTableLast(), TellKernel()]


def clone(
    plan: ClonePlan,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
) -> list[str]:
    """Clone as planned; returns the warnings for people: the source's unreadable areas
    (copied as zeros, as a save keeps them) and the files they hit."""
    progress = progress or Progress()
    src = plan.source
    target = recheck_target(plan.target)
    check_target(target, source=src, sector=src.logical_sector)
    check_not_in_use(target)
    progress.total = plan.total
    steps = clone_steps(plan, target)
    bad = execute(steps, target, progress=progress, cancel=cancel, workers=workers, table=src.table)
    plan.unreadable = bad
    progress.set_phase(
        Phase.DONE,
        f"{src.node} cloned onto {target.node} ({human_size(progress.done)} of used data)",
    )
    regions = [r.region for r in plan.regions]
    return unreadable_warnings(
        src, regions, bad, lambda _line: None, done="copied", rest="the --json output"
    )

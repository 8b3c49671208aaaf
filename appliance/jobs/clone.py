"""clone: disk to disk through the same pipeline as save (used data only, no repository),
onto a target of the same size, larger or smaller.

The source is only ever read: a partition that must shrink is shrunk on a copy-on-write view
of it (appliance.cowview), never in place.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from appliance.blockio import flush, open_direct
from appliance.devices import probe_disk
from appliance.errors import SafetyRefusal
from appliance.fit import FitPlan, SourcePart, fit
from appliance.jobs.fitting import (
    PartInfo,
    check_min_size,
    copy_ranges,
    finish,
    shrink_and_copy,
    wipe_new_partitions,
    wipe_old_signatures,
)
from appliance.jobs.save import RegionPlan, plan_regions
from appliance.model import Disk, human_size
from appliance.progress import Progress
from appliance.safety import check_not_in_use, check_source, check_target
from appliance.tablewrite import BOOT_CODE, read_sfdisk_json, write_table


@dataclass
class ClonePlan:
    source: Disk
    target: Disk
    fit: FitPlan
    regions: list[RegionPlan]

    @property
    def total(self) -> int:
        return sum(r.region.used_bytes for r in self.regions)

    def describe(self) -> list[str]:
        lines = [f"Clone {self.source.describe()}",
                 f"onto {self.target.describe()} (everything on it is erased):"]
        return lines + [f"  {line}" for line in self.fit.describe()]

    def to_json(self) -> dict[str, Any]:
        return {"command": "clone", "source": self.source.node, "target": self.target.node,
                "bytes": self.total, "fit": self.fit.to_json()}


def _view_args(plan: ClonePlan) -> dict[str, Any]:
    assert plan.fit.resize is not None
    part = plan.source.partition(plan.fit.resize)
    assert part is not None
    return {"device": plan.source.node, "offset": part.start}


def plan_clone(source: str, target: str, grow: int | None = None,
               progress: Progress | None = None) -> ClonePlan:
    src = probe_disk(source)
    dst = probe_disk(target)
    check_target(dst, source=src, sector=src.logical_sector)
    check_source(src)
    parts = [SourcePart(p.number, p.kind, p.type, p.start, p.size, p.fstype)
             for p in src.partitions]
    plan_fit = fit(parts, table=src.table, source_size=src.size, target_size=dst.size,
                   sector=src.logical_sector, grow=grow)
    regions = plan_regions(src, progress or Progress())
    plan = ClonePlan(src, dst, plan_fit, regions)
    if plan_fit.resize is not None and plan_fit.part(plan_fit.resize).new_size < \
            plan_fit.part(plan_fit.resize).old_size:
        check_min_size(plan_fit, _view_args(plan))
    return plan


def clone(plan: ClonePlan, *, progress: Progress | None = None,
          cancel: threading.Event | None = None, workers: int | None = None) -> None:
    progress = progress or Progress()
    src, fitp = plan.source, plan.fit
    target = probe_disk(plan.target.node)
    if target.devnum != plan.target.devnum or target.size != plan.target.size:
        raise SafetyRefusal("The target disk changed since the plan was made; start again.")
    check_target(target, source=src, sector=src.logical_sector)
    check_not_in_use(target)
    progress.total = plan.total
    table_json: dict[str, Any] = {}
    boot = b""
    if not fitp.identity and src.table:
        table_json = read_sfdisk_json(src.node)
        with open(src.node, "rb") as handle:
            boot = handle.read(BOOT_CODE)
    progress.set_phase("table", f"wiping old signatures on {target.node}")
    wipe_old_signatures(target)

    shrunk = fitp.resize if fitp.resize is not None and \
        fitp.part(fitp.resize).new_size < fitp.part(fitp.resize).old_size else None
    head_end = min((p.start for p in src.partitions), default=src.size)
    src_fd = open_direct(src.node)
    dst_fd = open_direct(target.node, write=True)
    try:
        progress.set_phase("clone", f"cloning {src.node} onto {target.node}")
        outside = plan.regions[0]
        used = outside.used if fitp.identity else [
            (s, min(n, head_end - s)) for s, n in outside.used if s < head_end]
        progress.adjust_total(sum(n for _, n in used) - outside.region.used_bytes)
        copy_ranges(src_fd, 0, dst_fd, 0, used, src.size, sector=src.logical_sector,
                    progress=progress, cancel=cancel, workers=workers)
        flush(dst_fd)
        if table_json:
            write_table(target.node, table_json, fitp, boot)
        wipe_new_partitions(target)
        for rplan in plan.regions[1:]:
            number = rplan.region.partition
            assert number is not None
            if number == shrunk:
                continue
            copy_ranges(src_fd, rplan.region.start, dst_fd, fitp.new_start(number),
                        rplan.used, rplan.region.size, sector=src.logical_sector,
                        progress=progress, cancel=cancel, workers=workers)
        if shrunk is not None:
            shrink_and_copy(fitp, _view_args(plan), dst_fd, sector=src.logical_sector,
                            progress=progress, cancel=cancel, counted=next(
                                r.region.used_bytes for r in plan.regions
                                if r.region.partition == shrunk))
        flush(dst_fd)
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    finish(target.node, fitp, [PartInfo(r.region.partition, r.region.fstype, r.region.label,
                                        r.region.uuid, r.region.method)
                               for r in plan.regions[1:] if r.region.partition is not None],
           progress)
    progress.set_phase("done", f"{src.node} cloned onto {target.node} "
                       f"({human_size(progress.done)} of used data)")


"""restore: an image onto a disk of the same size, larger, or smaller when the data fits.

Plan (image, target, fit: where each partition lands) and check everything first, shrink
feasibility included; then build the write plan (appliance.jobs.writeplan) and run it: mark the
target incomplete, wipe old signatures, write the boot area and table sectors, tell the
kernel the new partitions, write each partition's used ranges at its new place (every chunk
re-hashed as it is read), shrink a partition on a copy-on-write view of the image when the
target is smaller, recreate swap, grow filesystems that got more room, and make the table
valid last. Several targets at once, each chunk read once for all: appliance.jobs.multirestore.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from appliance.disk.marker import Marker
from appliance.disk.model import Disk
from appliance.disk.probe import probe_disk
from appliance.errors import ImageError
from appliance.io.pipeline import Placement, Window, write_windows
from appliance.io.source import RepositorySource
from appliance.jobs.fitting import (
    PartInfo,
    ShrinkCopy,
    finishing_steps,
    kernel_parts,
    needs_shrink,
    recheck_target,
    source_parts,
    with_min_sizes,
)
from appliance.jobs.precheck import precheck
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
from appliance.plan.fit import FitPlan, fit
from appliance.plan.safety import check_target
from appliance.plan.table import table_sectors
from appliance.progress import Phase, Progress
from appliance.repo.image import LoadedImage, load_image
from appliance.repo.imagelog import ImageLog
from appliance.repo.manifest import Region
from appliance.repo.repository import Repository
from appliance.units import human_size


@dataclass
class RestorePlan:
    image: LoadedImage
    target: Disk
    fit: FitPlan

    @cached_property
    def source(self) -> RepositorySource:
        return RepositorySource.from_image(self.image)

    @property
    def same_size(self) -> bool:
        return self.fit.identity

    @property
    def total(self) -> int:
        return sum(p.used_bytes for p in self.placements()) + sum(
            r.used_bytes for r in self.shrunk_regions()
        )

    def shrunk_regions(self) -> list[Region]:
        return [
            r
            for r in self.image.manifest.regions
            if r.partition is not None and r.partition in self.fit.shrunk
        ]

    def head_end(self) -> int:
        """Where the first partition starts: the table and boot area lie before it."""
        return min(
            (r.start for r in self.image.manifest.regions if r.partition is not None),
            default=self.image.manifest.disk.size,
        )

    def placements(self, only: str | None = None) -> Iterator[Placement]:
        """Every window to write from the repository, at its place on the target."""
        shrunk = {r.name for r in self.shrunk_regions()}
        for number, region in enumerate(self.image.manifest.regions):
            if (only is not None and region.name != only) or region.name in shrunk:
                continue
            for win in self.source.regions[number].windows(number):
                place = self.placement(number, win)
                if place is not None:
                    yield place

    def placement(self, number: int, win: Window) -> Placement | None:
        """Where window `win` of region `number` lands on this plan's target, and which of
        its bytes are written there (None: none of them); a restore onto several disks
        reads each window once and asks every target's plan this."""
        region = self.image.manifest.regions[number]
        shift = 0
        if region.partition is not None:
            shift = self.fit.new_start(region.partition) - region.start
        used = win.used
        if region.partition is None and not self.fit.identity:
            # A new table is written by sfdisk: keep only the boot area before it.
            used = tuple((s, n) for s, n in used if win.offset + s < self.head_end())
            if not used:
                return None
        return Placement(
            number,
            win.offset + shift,
            win.length,
            used,
            self.source.chunk(number, win.number),
        )

    def describe(self) -> list[str]:
        return self.fit.describe()


def fit_for(loaded: LoadedImage, target: Disk, grow: int | None) -> FitPlan:
    manifest = loaded.manifest
    table = manifest.table
    fstypes = {r.partition: r.fstype for r in manifest.regions if r.partition is not None}
    parts = source_parts(table.partitions if table else (), fstypes)
    sector = manifest.disk.logical_sector
    names = {r.partition: r.name for r in manifest.regions if r.partition is not None}
    if needs_shrink(parts, table.type if table else None, target.size, sector):
        parts = with_min_sizes(
            parts,
            lambda p: {
                "repo": loaded.repo.location,
                "image": manifest.name,
                "region": names[p.number],
            },
            grow=grow,
        )
    return fit(
        parts,
        table=table.type if table else None,
        source_size=manifest.disk.size,
        target_size=target.size,
        sector=manifest.disk.logical_sector,
        grow=grow,
    )


def plan_restore(repo_path: str, image: str, target: str, grow: int | None = None) -> RestorePlan:
    repo = Repository.open(repo_path)
    loaded = load_image(repo, image)
    disk = probe_disk(target)
    check_target(disk, repo_path=repo.folder, sector=loaded.manifest.disk.logical_sector)
    return RestorePlan(loaded, disk, fit_for(loaded, disk, grow))


def _view_args(plan: RestorePlan, region: Region) -> dict[str, Any]:
    return {
        "repo": plan.image.repo.location,
        "image": plan.image.manifest.name,
        "region": region.name,
    }


@dataclass
class ImageRegion(Step):
    """Write one region of the image (the boot area, or a partition) at its place on the
    target, every chunk re-hashed; bytes that fall on held-back sectors are kept for last."""

    plan: RestorePlan = field(repr=False)
    region: str

    def describe(self) -> str:
        manifest = self.plan.image.manifest
        region = next(r for r in manifest.regions if r.name == self.region)
        if region.partition is None:
            if manifest.table is None:
                return "write the whole-disk data (its first MiB held back)"
            what = "table and boot areas" if self.plan.fit.identity else "boot area"
            return f"write the image's {what} (LBA 0, 1 and last held back)"
        start = self.plan.fit.new_start(region.partition)
        return f"write {region.describe()}: {human_size(region.used_bytes)} used, at byte {start}"

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "region": self.region}

    def run(self, ctx: Context) -> None:
        source = self.plan.source
        later: dict[int, list[tuple[int, int]]] = {}

        def held_back() -> Iterator[Placement]:
            for place in self.plan.placements(only=self.region):
                now, held = ctx.split(place.offset, place.used)
                if held and place.chunk is None:
                    for start, length in held:
                        ctx.keep(place.offset + start, bytes(length), count=True)
                elif held:
                    later[place.offset] = held
                yield replace(place, used=tuple(now))

        def decode(place: Placement, blob: bytes | memoryview, out: memoryview) -> None:
            assert place.chunk is not None
            source.decode_into(place.region, place.chunk, place.length, blob, out)
            for start, length in later.get(place.offset, ()):
                ctx.keep(place.offset + start, out[start : start + length], count=True)

        ctx.progress.set_phase(
            Phase.RESTORE, f"restoring {self.plan.image.manifest.name} onto {ctx.target.node}"
        )
        write_windows(
            ctx.fd,
            held_back(),
            source.fetch,
            decode,
            progress=ctx.progress,
            cancel=ctx.cancel,
            workers=ctx.workers,
            fetchers=source.fetchers,
            pooled=source.pooled,
        )


def _table_json(plan: RestorePlan) -> dict[str, Any]:
    manifest = plan.image.manifest
    if plan.fit.identity or not manifest.table:
        return {}
    table: dict[str, Any] = manifest.table.sfdisk or {}
    if not table:
        raise ImageError(
            f"The image {manifest.name} does not record its partition table "
            "in a form that can be fitted; restore it onto a disk of the "
            "same size."
        )
    return table


def restore_steps(plan: RestorePlan, target: Disk | None = None) -> list[Step]:
    """Every step of the restore, in order (printed by --dry-run, run by restore)."""
    target = target or plan.target
    manifest = plan.image.manifest
    sector = manifest.disk.logical_sector
    source = manifest.disk.what
    marker = Marker(
        "restore",
        manifest.name,
        plan.image.repo.location,
        str(source) if source else None,
        now_utc(),
    )
    steps: list[Step] = [
        MarkIncomplete(marker),
        WipeSignatures(tuple(p.node for p in target.partitions if p.kind != "extended")),
        ImageRegion(plan, "outside"),
    ]
    table_json = _table_json(plan)
    if table_json:
        fitp = plan.fit
        steps.append(
            TableSectors(
                str(table_json.get("label", "")),
                lambda: table_sectors(table_json, fitp, target.size, sector),
            )
        )
    parts = kernel_parts(plan.fit)
    if parts:
        steps.append(AddPartitions(parts))
    shrunk = {r.name for r in plan.shrunk_regions()}
    steps += [
        ImageRegion(plan, r.name)
        for r in manifest.regions
        if r.partition is not None and r.name not in shrunk
    ]
    steps += [
        ShrinkCopy(plan.fit, r.partition, _view_args(plan, r), r.used_bytes)
        for r in plan.shrunk_regions()
        if r.partition is not None
    ]
    steps += finishing_steps(
        plan.fit,
        [
            PartInfo(r.partition, r.fstype, r.label, r.uuid, r.method)
            for r in manifest.regions
            if r.partition is not None
        ],
    )
    return [*steps, Flush(), WriteTableLast(), TellKernel()]


def restore(
    plan: RestorePlan,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    verify_first: bool = False,
) -> None:
    progress = progress or Progress()
    # before the first write: every chunk there, the table as recorded (re-hashed if asked)
    precheck(plan, verify_first=verify_first, progress=progress, cancel=cancel)
    manifest = plan.image.manifest
    target = recheck_target(plan.target)  # the disk may have changed since the plan
    check_target(target, repo_path=plan.image.repo.folder, sector=manifest.disk.logical_sector)
    log = ImageLog(plan.image.repo, manifest.name)
    progress.total = plan.total
    steps = restore_steps(plan, target)
    execute(
        steps,
        target,
        progress=progress,
        cancel=cancel,
        workers=workers,
        table=manifest.table.type if manifest.table else None,
    )
    log.write(
        f"restored onto {target.describe()}"
        + ("" if plan.fit.identity else f"; layout fitted: {'; '.join(plan.describe())}")
    )
    progress.set_phase(Phase.DONE, f"{manifest.name} restored onto {target.node}")

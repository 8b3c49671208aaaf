"""restore: an image onto a disk of the same size, larger, or smaller when the data fits.

Plan (image, target, fit: where each partition lands) and check everything first, shrink
feasibility included; then wipe old signatures, write the table and boot areas, write each
partition's used ranges at its new place (every chunk re-hashed as it is read), shrink a
partition on a copy-on-write view of the image when the target is smaller, recreate swap,
grow filesystems that got more room, and tell the kernel about the new partitions.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.blockio import flush, open_direct
from appliance.chunkfmt import Decoder
from appliance.devices import probe_disk
from appliance.errors import CorruptData, DeviceError, ImageError
from appliance.fit import FitPlan, fit
from appliance.jobs.fitting import (
    PartInfo,
    check_min_size,
    finish,
    shrink_and_copy,
    source_parts,
    wipe_new_partitions,
    wipe_old_signatures,
)
from appliance.jobs.imagelog import ImageLog
from appliance.jobs.imageread import LoadedImage, load_image
from appliance.manifest import Region, window_ranges
from appliance.model import Disk
from appliance.pipeline import Placement, write_windows
from appliance.progress import Progress
from appliance.repo import Repository
from appliance.safety import check_target
from appliance.tablewrite import BOOT_CODE, write_table


@dataclass
class RestorePlan:
    image: LoadedImage
    target: Disk
    fit: FitPlan

    @property
    def same_size(self) -> bool:
        return self.fit.identity

    @property
    def total(self) -> int:
        return sum(p.used_bytes for p in self.placements()) + sum(
            r.used_bytes for r in self.shrunk_regions())

    def shrunk_regions(self) -> list[Region]:
        return [r for r in self.image.manifest.regions if r.partition is not None
                and r.partition == self.fit.resize
                and self.fit.part(r.partition).new_size < r.size]

    def head_end(self) -> int:
        """Where the first partition starts: the table and boot area lie before it."""
        return min((r.start for r in self.image.manifest.regions if r.partition is not None),
                   default=int(self.image.manifest.disk["size"]))

    def placements(self, only: str | None = None) -> Iterator[Placement]:
        """Every window to write from the repository, at its place on the target."""
        shrunk = {r.name for r in self.shrunk_regions()}
        for number, region in enumerate(self.image.manifest.regions):
            if (only is not None and region.name != only) or region.name in shrunk:
                continue
            index = self.image.indexes[region.name]
            shift = 0
            if region.partition is not None:
                shift = self.fit.new_start(region.partition) - region.start
            by_window = window_ranges(index.used, index.window, region.size)
            for win in sorted(by_window):
                used = by_window[win]
                offset = region.start + win * index.window
                if region.partition is None and not self.fit.identity:
                    # A new table is written by sfdisk: keep only the boot area before it.
                    used = [(s, n) for s, n in used if offset + s < self.head_end()]
                    if not used:
                        continue
                yield Placement(number, offset + shift,
                                min(index.window, region.size - win * index.window),
                                tuple(used), index.chunks[win])

    def describe(self) -> list[str]:
        return self.fit.describe()


def _fit_for(loaded: LoadedImage, target: Disk, grow: int | None) -> FitPlan:
    manifest = loaded.manifest
    table = manifest.table
    fstypes = {r.partition: r.fstype for r in manifest.regions if r.partition is not None}
    parts = source_parts(table["partitions"] if table else [], fstypes)
    return fit(parts, table=table["type"] if table else None,
               source_size=int(manifest.disk["size"]), target_size=target.size,
               sector=int(manifest.disk["logical_sector"]), grow=grow)


def plan_restore(repo_path: str, image: str, target: str, grow: int | None = None
                 ) -> RestorePlan:
    repo = Repository.open(repo_path)
    loaded = load_image(repo, image)
    disk = probe_disk(target)
    check_target(disk, repo_path=Path(repo_path),
                 sector=int(loaded.manifest.disk["logical_sector"]))
    plan = RestorePlan(loaded, disk, _fit_for(loaded, disk, grow))
    for region in plan.shrunk_regions():
        check_min_size(plan.fit, _view_args(plan, region))
    return plan


def _view_args(plan: RestorePlan, region: Region) -> dict[str, Any]:
    return {"repo": str(plan.image.repo.root), "image": plan.image.manifest.name,
            "region": region.name}


def _boot_code(plan: RestorePlan, fetch: Any) -> bytes:
    """Bytes 0-439 of the source disk (the MBR boot code), from the image."""
    outside = plan.image.manifest.regions[0]
    index = plan.image.indexes[outside.name]
    name = index.chunks[0] if index.chunks else None
    if name is None:
        return bytes(BOOT_CODE)
    length = min(index.window, outside.size)
    return Decoder().decode(fetch(name), name, length)[:BOOT_CODE]


def restore(plan: RestorePlan, *, progress: Progress | None = None,
            cancel: threading.Event | None = None, workers: int | None = None) -> None:
    progress = progress or Progress()
    manifest = plan.image.manifest
    target = probe_disk(plan.target.node)  # probe again: the disk may have changed since
    if target.devnum != plan.target.devnum or target.size != plan.target.size:
        raise DeviceError("The target disk changed since the plan was made; start again.")
    check_target(target, repo_path=plan.image.repo.root,
                 sector=int(manifest.disk["logical_sector"]))
    log = ImageLog(plan.image.repo.image_dir(manifest.name) / "log.txt")
    progress.total = plan.total
    decoder = threading.local()

    def decode(place: Placement, blob: bytes) -> bytes:
        dec = getattr(decoder, "d", None)
        if dec is None:
            dec = decoder.d = Decoder()
        assert place.chunk is not None
        try:
            return dec.decode(blob, place.chunk, place.length)
        except CorruptData as exc:
            region = manifest.regions[place.region]
            raise CorruptData(f"{exc} It holds data of {region.describe()} of image "
                              f"{manifest.name}; the restore stopped and {target.node} is "
                              "incomplete.") from exc

    def fetch(name: str) -> bytes:
        try:
            return plan.image.repo.get_chunk(name)
        except CorruptData as exc:
            raise CorruptData(f"{exc} The restore stopped and {target.node} is "
                              "incomplete.") from exc

    table_json: dict[str, Any] = {}
    boot = b""
    if not plan.fit.identity and manifest.table:
        table_json = manifest.table.get("sfdisk") or {}
        if not table_json:
            raise ImageError(f"The image {manifest.name} does not record its partition table "
                             "in a form that can be fitted; restore it onto a disk of the "
                             "same size.")
        boot = _boot_code(plan, fetch)

    progress.set_phase("table", f"wiping old signatures on {target.node}")
    wipe_old_signatures(target)

    sector = int(manifest.disk["logical_sector"])
    fd = open_direct(target.node, write=True)
    try:
        progress.set_phase("restore", f"restoring {manifest.name} onto {target.node}")
        # 1. the table and boot areas, then the kernel's view of the new partitions
        write_windows(fd, plan.placements(only="outside"), fetch, decode, progress=progress,
                      cancel=cancel, workers=workers)
        flush(fd)
        if table_json:
            write_table(target.node, table_json, plan.fit, boot)
        wipe_new_partitions(target)
        # 2. the partitions' used data, each at its new place
        data = (p for p in plan.placements() if manifest.regions[p.region].partition)
        write_windows(fd, data, fetch, decode, progress=progress, cancel=cancel,
                      workers=workers)
        # 3. a partition that must shrink: on a copy-on-write view of the image
        for region in plan.shrunk_regions():
            shrink_and_copy(plan.fit, _view_args(plan, region), fd, sector=sector,
                            progress=progress, cancel=cancel, counted=region.used_bytes)
        flush(fd)
    finally:
        os.close(fd)
    finish(target.node, plan.fit, [PartInfo(r.partition, r.fstype, r.label, r.uuid, r.method)
                                   for r in manifest.regions if r.partition is not None],
           progress)
    log.write(f"restored onto {target.describe()}"
              + ("" if plan.fit.identity else f"; layout fitted: {'; '.join(plan.describe())}"))
    progress.set_phase("done", f"{manifest.name} restored onto {target.node}")


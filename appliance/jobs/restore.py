"""restore: an image onto a disk of the same size or larger.

Plan (image, target, what will be written) and check everything first; then wipe old
signatures, write the table and boot areas, move the GPT backup to the real end of a larger
target, write each partition's used ranges (every chunk re-hashed as it is read), recreate
swap, and tell the kernel about the new partitions.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from appliance.blockio import flush, open_direct
from appliance.chunkfmt import Decoder
from appliance.devices import partition_node, probe_disk, sync_partitions
from appliance.errors import CorruptData
from appliance.jobs.imagelog import ImageLog
from appliance.jobs.imageread import LoadedImage, load_image
from appliance.manifest import window_ranges
from appliance.model import Disk
from appliance.pipeline import Placement, write_windows
from appliance.progress import Progress
from appliance.repo import Repository
from appliance.safety import check_target
from appliance.tools import run


@dataclass
class RestorePlan:
    image: LoadedImage
    target: Disk
    same_size: bool

    @property
    def total(self) -> int:
        return sum(self.placed_bytes(r.name) for r in self.image.manifest.regions)

    def placed_bytes(self, region_name: str) -> int:
        return sum(p.used_bytes for p in self.placements(only=region_name))

    def placements(self, only: str | None = None) -> Iterator[Placement]:
        """Every window to write, in disk order within each region."""
        for number, region in enumerate(self.image.manifest.regions):
            if only is not None and region.name != only:
                continue
            index = self.image.indexes[region.name]
            by_window = window_ranges(index.used, index.window, region.size)
            for win in sorted(by_window):
                used = by_window[win]
                offset = region.start + win * index.window
                if region.tail_start is not None and not self.same_size:
                    # A larger target: the GPT backup goes to the new end (sgdisk -e).
                    used = [(s, n) for s, n in used if offset + s < region.tail_start]
                    if not used:
                        continue
                yield Placement(number, offset, min(index.window, region.size - win *
                                                    index.window), tuple(used),
                                index.chunks[win])


def plan_restore(repo_path: str, image: str, target: str) -> RestorePlan:
    repo = Repository.open(repo_path)
    loaded = load_image(repo, image)
    disk = probe_disk(target)
    need = int(loaded.manifest.disk["size"])
    check_target(disk, repo_path=Path(repo_path), needed_size=need,
                 sector=int(loaded.manifest.disk["logical_sector"]))
    return RestorePlan(loaded, disk, same_size=disk.size == need)


def restore(plan: RestorePlan, *, progress: Progress | None = None,
            cancel: threading.Event | None = None, workers: int | None = None) -> None:
    progress = progress or Progress()
    manifest = plan.image.manifest
    target = probe_disk(plan.target.node)  # probe again: the disk may have changed since
    if target.devnum != plan.target.devnum or target.size != plan.target.size:
        plan_check = "The target disk changed since the plan was made; start again."
        raise CorruptData(plan_check)
    check_target(target, repo_path=plan.image.repo.root, needed_size=int(manifest.disk["size"]),
                 sector=int(manifest.disk["logical_sector"]))
    log = ImageLog(plan.image.repo.image_dir(manifest.name) / "log.txt")
    progress.total = plan.total
    progress.set_phase("table", f"wiping old signatures on {target.node}")
    for part in target.partitions:
        if part.kind != "extended" and part.node and os.path.exists(part.node):
            run(["wipefs", "--all", "--quiet", part.node])
    run(["wipefs", "--all", "--quiet", target.node])

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

    fd = open_direct(target.node, write=True)
    try:
        progress.set_phase("restore", f"restoring {manifest.name} onto {target.node}")
        # 1. the table and boot areas, then the kernel's view of the new partitions
        write_windows(fd, plan.placements(only="outside"), fetch, decode, progress=progress,
                      cancel=cancel, workers=workers)
        flush(fd)
        if manifest.table and manifest.table["type"] == "gpt" and not plan.same_size:
            run(["sgdisk", "--move-second-header", target.node])
        fresh = probe_disk(target.node)
        sync_partitions(fresh)
        for region in manifest.regions:
            if region.partition is not None:
                node = partition_node(fresh, region.partition)
                run(["wipefs", "--all", "--quiet", node])
        # 2. the partitions' used data
        data = (p for p in plan.placements() if manifest.regions[p.region].name != "outside")
        write_windows(fd, data, fetch, decode, progress=progress, cancel=cancel,
                      workers=workers)
        flush(fd)
    finally:
        os.close(fd)
    for region in manifest.regions:
        if region.method == "swap" and region.partition is not None:
            node = partition_node(fresh, region.partition)
            args = ["mkswap", "--force"]
            if region.uuid:
                args += ["--uuid", region.uuid]
            if region.label:
                args += ["--label", region.label]
            run([*args, node])
    fresh = probe_disk(target.node)
    sync_partitions(fresh)
    drop_caches(fresh)
    log.write(f"restored onto {target.describe()}")
    progress.set_phase("done", f"{manifest.name} restored onto {target.node}")


def drop_caches(disk: Disk) -> None:
    """Forget cached blocks of the partition nodes: the data went in through the disk node."""
    for node in [disk.node, *(p.node for p in disk.partitions if p.node)]:
        try:
            fd = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            flush(fd)
        finally:
            os.close(fd)

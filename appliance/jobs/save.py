"""save: a whole disk into an image of a repository.

Model (probe the disk), plan (regions and their used maps), check (safety), then move bytes:
read used ranges with O_DIRECT, hash each 4 MiB window, store windows the repository does not
have yet, write the indexes, sync, and only then mark the manifest complete.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from appliance import __version__
from appliance.disk.blockio import open_direct
from appliance.disk.model import Disk
from appliance.disk.probe import partition_node, probe_source
from appliance.disk.usage import mounted_readonly
from appliance.errors import ImageError, ToolFailed
from appliance.fs.usedmap import UsedMap, normalize_ranges, subtract, used_map
from appliance.io.pipeline import WINDOW, Window, read_windows, store_workers_default
from appliance.io.windows import window_count, windows
from appliance.jobs import proof
from appliance.jobs.chunkwriter import ChunkWriter, Counters, complete
from appliance.jobs.savechecks import (
    check_free_space,
    copied_whole_warnings,
    unreadable_warnings,
)
from appliance.plan.regions import disk_record, outside_ranges, regions, table_record
from appliance.plan.safety import check_source
from appliance.plan.table import read_sfdisk_json
from appliance.progress import Phase, Progress
from appliance.repo.image import load_manifest
from appliance.repo.imagelog import ImageLog
from appliance.repo.manifest import Index, Manifest, Region, index_hash
from appliance.repo.repository import (
    Repository,
    check_save_place,
    check_writable,
    local_folder,
    open_store,
)


@dataclass
class RegionPlan:
    region: Region
    used: list[tuple[int, int]]  # relative to the region start
    chunks: list[str | None] = field(default_factory=list)
    zeros: list[tuple[int, int]] = field(default_factory=list)  # used, known zero: not read

    @property
    def read(self) -> list[tuple[int, int]]:
        """The used ranges the save reads (its known zeros are left out: the windows hold
        zeros there, and the index's used ranges make a restore write them)."""
        return subtract(self.used, self.zeros) if self.zeros else self.used


def plan_regions(disk: Disk, progress: Progress) -> list[RegionPlan]:
    """Each region with its used ranges (partclone's map, raw, or nothing for swap). The
    partitions are mapped at once, each by its own tool process: the maps wait on their
    tools and their disk reads, so the phase takes the longest map, not their sum."""
    found = regions(disk)
    mapped = [region for region in found if region.partition is not None]
    if mapped:
        what = mapped[0].describe() if len(mapped) == 1 else f"{len(mapped)} partitions"
        progress.set_phase(Phase.MAP, f"reading the used-block map of {what}")
    with ThreadPoolExecutor(max(1, len(mapped)), thread_name_prefix="map") as pool:
        maps = dict(zip((r.name for r in mapped), pool.map(_map_region(disk), mapped), strict=True))
    plans: list[RegionPlan] = []
    for region in found:
        zeros: list[tuple[int, int]] = []
        if region.partition is None:
            used = [(0, disk.size)] if region.method == "raw" else outside_ranges(disk)
        else:
            umap, note = maps[region.name]
            if note:
                region.note = note
            region.method = umap.method
            used = list(umap.ranges)
            zeros = list(umap.zeros)
        region.used_bytes = sum(length for _, length in used)
        plans.append(RegionPlan(region, used, [None] * window_count(region.size), zeros))
    return plans


def _map_region(disk: Disk) -> Callable[[Region], tuple[UsedMap, str | None]]:
    def mapped(region: Region) -> tuple[UsedMap, str | None]:
        assert region.partition is not None
        node = partition_node(disk, region.partition)
        try:  # mounted read-only (a read-write mount was refused): map it all the same
            umap = used_map(
                node,
                region.fstype,
                region.size,
                align=disk.logical_sector,
                force=mounted_readonly(node),
            )
        except ToolFailed as exc:
            # A damaged or unclean filesystem: copy every byte rather than trust its map.
            return UsedMap(region.size, ((0, region.size),), "raw"), f"copied whole: {exc}"
        return umap, None

    return mapped


def windows_of(plans: list[RegionPlan]) -> Iterator[Window]:
    for number, plan in enumerate(plans):
        yield from windows(plan.read, plan.region.size, base=plan.region.start, region=number)


def save(
    source: str,
    repo_path: str,
    image: str,
    *,
    level: int = 3,
    resume: bool = False,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    create: bool = False,
    allow_ram: bool = False,
    check: bool = True,
) -> Manifest:
    """`create`: make the repository when the folder holds none (else a refusal);
    `allow_ram`: accept a repository on tmpfs/ramfs; `check`: prove each mapped filesystem
    on the image (its own checker, read-only) before the image is called complete."""
    progress = progress or Progress()
    started = time.monotonic()
    # a location this version cannot reach, or cannot write (a web server), is refused first
    check_writable(open_store(repo_path), "saving an image")
    folder = local_folder(repo_path)  # None: a bucket, no disk of this machine holds it
    disk = probe_source(source)
    check_source(disk, folder)  # before the repository folder is created
    if folder is not None:
        check_save_place(folder, create=create, allow_ram=allow_ram)
    plans = plan_regions(disk, progress)
    if not resume and folder is not None:  # a resumed image has part of its chunks stored
        check_free_space(folder, disk, image, sum(plan.region.used_bytes for plan in plans))
    repo = Repository.open_for_save(repo_path, create=create, allow_ram=allow_ram)
    with repo.lock(f"save {disk.name} to {image}"):
        manifest_key = repo.image_key(image, "manifest.json")
        if repo.exists(manifest_key):
            old = load_manifest(repo, image)
            if old.complete:
                raise ImageError(
                    f"An image named {image} already exists in {repo_path}; choose another name."
                )
            if not resume:
                raise ImageError(
                    f"An unfinished image named {image} is in {repo_path}; add "
                    "--resume to continue it, or choose another name."
                )
            if (old.disk.size, old.disk.serial) != (disk.size, disk.serial):
                raise ImageError(
                    f"The unfinished image {image} was saved from another disk "
                    f"({old.disk.model}, {old.disk.size} bytes); "
                    "choose another name."
                )
        repo.remove_tmp_files()
        sfdisk = (disk.sfdisk or read_sfdisk_json(disk.node)) if disk.table else None
        manifest = Manifest(
            name=image,
            disk=disk_record(disk),
            table=table_record(disk, sfdisk),
            regions=[],
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            tool_version=__version__,
        )
        repo.write_file(manifest_key, manifest.to_json().encode())  # makes the image's folder
        log = ImageLog(repo, image)
        log.write(f"save of {disk.describe()} started{' (resumed)' if resume else ''}")

        manifest.regions = [plan.region for plan in plans]
        for plan in plans:
            log.write(
                f"{plan.region.name}: {plan.region.describe()}, {plan.region.method}, "
                f"{plan.region.used_bytes} bytes used"
                + (f" ({plan.region.note})" if plan.region.note else "")
            )
        progress.total = sum(plan.region.used_bytes for plan in plans)
        stats = Counters()
        bad: list[tuple[int, int]] = []
        prover = _start_proofs(disk, repo, plans, log) if check else None
        if prover is None:
            proof.skip_all(manifest.regions)
        try:
            _move(disk, repo, plans, stats, bad, level, progress, cancel, workers, prover)
            progress.set_phase(Phase.SYNC, "making the image durable")
            repo.sync()
        except BaseException:
            if prover is not None:
                prover.abort()
            raise
        if prover is not None:
            _finish_proofs(
                disk, repo, plans, prover, stats, bad, level, progress, cancel, workers, log
            )
        for plan in plans:
            index = Index(plan.region.name, WINDOW, plan.region.size, plan.used, plan.chunks)
            blob = index.encode()
            plan.region.index = f"{plan.region.name}.idx"
            plan.region.index_hash = index_hash(blob)
            plan.region.stored_windows = sum(1 for c in plan.chunks if c is not None)
            repo.write_file(repo.image_key(image, plan.region.index), blob)
        if bad:
            log.write(f"{len(bad)} unreadable ranges were saved as zeros: {bad[:20]}")
        warnings = copied_whole_warnings(disk, manifest.regions)
        warnings += proof.proof_warnings(manifest.regions)
        warnings += unreadable_warnings(disk, manifest.regions, bad, log.write)
        if stats.repaired_chunks:
            many = stats.repaired_chunks > 1
            warnings.append(
                f"{stats.repaired_chunks} damaged chunk{'s' if many else ''} of the "
                f"repository {'were' if many else 'was'} rewritten"
            )
        for warning in warnings:
            log.write(f"warning: {warning}")
        complete(
            repo, manifest, stats, started, log.write, "save", warnings=warnings, read_errors=bad
        )
        progress.set_phase(Phase.DONE, f"image {image} saved")
        return manifest


def _start_proofs(
    disk: Disk, repo: Repository, plans: list[RegionPlan], log: ImageLog
) -> proof.Prover:
    """A prover that checks each mapped region on the image once its windows are stored."""
    regions = [plan.region for plan in plans]
    nodes = {
        number: partition_node(disk, region.partition)
        for number, region in enumerate(regions)
        if region.partition is not None and proof.proven_kind(region)
    }
    return proof.Prover(repo, regions, nodes, log.write)


def _finish_proofs(
    disk: Disk,
    repo: Repository,
    plans: list[RegionPlan],
    prover: proof.Prover,
    stats: Counters,
    bad: list[tuple[int, int]],
    level: int,
    progress: Progress,
    cancel: threading.Event | None,
    workers: int | None,
    log: ImageLog,
) -> None:
    """Wait for the proofs; save every region whose image failed its check again, whole."""
    progress.set_phase(Phase.PROOF, "checking the saved filesystems on the image")
    failed = [plans[number] for number in prover.finish()]
    if not failed:
        return
    for plan in failed:
        region = plan.region
        log.write(f"{region.name}: {region.note}; saving {region.describe()} again whole")
        plan.used = list(normalize_ranges([(0, region.size)], region.size, disk.logical_sector))
        plan.zeros = []
        plan.chunks = [None] * len(plan.chunks)
        region.method = "raw"
        region.used_bytes = region.size
        progress.total += region.size  # the bytes already moved stay counted as done
    _move(disk, repo, failed, stats, bad, level, progress, cancel, workers)
    progress.set_phase(Phase.SYNC, "making the image durable")
    repo.sync()


def _move(
    disk: Disk,
    repo: Repository,
    plans: list[RegionPlan],
    stats: Counters,
    bad: list[tuple[int, int]],
    level: int,
    progress: Progress,
    cancel: threading.Event | None,
    workers: int | None,
    prover: proof.Prover | None = None,
) -> None:
    work = ChunkWriter(repo, [plan.chunks for plan in plans], level, stats)
    step: Callable[[Window, memoryview], None] = work
    if prover is not None:
        counts = {
            number: sum(1 for _ in windows(plan.read, plan.region.size))
            for number, plan in enumerate(plans)
        }
        counter = proof.WindowCounter(
            counts, lambda number: prover.submit(number, plans[number].used, plans[number].chunks)
        )
        step = counter.wrap(work)
    fd = open_direct(disk.node)
    try:
        progress.set_phase(Phase.SAVE, f"saving {disk.describe()}")
        progress.add(sum(n for plan in plans for _, n in plan.zeros))  # known zeros: no read
        read_windows(
            fd,
            windows_of(plans),
            step,
            sector=disk.logical_sector,
            progress=progress,
            cancel=cancel,
            workers=workers or store_workers_default(),
            bad=bad,
        )
    finally:
        os.close(fd)

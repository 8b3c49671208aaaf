"""verify: prove an image is intact (every index and chunk re-hashed), or that a disk holds
the same data as the image: byte for byte where the layout allows, by files for a partition
whose filesystem was resized, and "not compared" said, with why, of anything else."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from appliance.disk.blockio import open_direct
from appliance.disk.model import Disk
from appliance.disk.probe import probe_source
from appliance.errors import CorruptData, RepositoryError, VerifyMismatch
from appliance.fs.compare import (
    can_compare,
    compare_trees,
    mounted_read_only,
    read_only_loop,
    why_not,
)
from appliance.io.cowview import CowView
from appliance.io.pipeline import Stage, Window, read_windows, workers_default
from appliance.io.source import RepositorySource
from appliance.io.windows import window_length
from appliance.plan.fit import GROWABLE_FS
from appliance.plan.safety import check_not_boot_stick
from appliance.progress import Phase, Progress
from appliance.repo.chunk import Decoder
from appliance.repo.image import LoadedImage, load_image
from appliance.repo.manifest import Region
from appliance.repo.repository import Repository
from appliance.units import human_size


@dataclass
class VerifyResult:
    image: str
    chunks: int = 0
    bytes_checked: int = 0
    skipped: list[str] = field(default_factory=list)  # what was not compared, and why
    checks: list[RegionCheck] = field(default_factory=list)  # verify --against: each region


def verify_image(
    repo_path: str,
    image: str,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
) -> VerifyResult:
    """Re-hash every index (load_image) and every distinct chunk the image uses."""
    progress = progress or Progress()
    repo = Repository.open(repo_path)
    loaded = load_image(repo, image)
    owner: dict[str, tuple[Region, int]] = {}
    for region in loaded.manifest.regions:
        index = loaded.indexes[region.name]
        for number, name in enumerate(index.chunks):
            if name is not None and name not in owner:
                length = window_length(number, region.size, index.window)
                owner[name] = (region, length)
    result = VerifyResult(image, chunks=len(owner))
    progress.total = sum(length for _, length in owner.values())
    progress.set_phase(Phase.VERIFY, f"checking {len(owner)} chunks of {image}")
    names: queue.Queue[object] = queue.Queue()
    for name in owner:
        names.put(name)
    nworkers = workers or workers_default()
    stage = Stage(progress, cancel)

    def worker() -> None:
        decoder = Decoder(repo.chunk_name)
        while not stage.stop.is_set():
            try:
                name = names.get_nowait()
            except queue.Empty:
                return
            assert isinstance(name, str)
            region, length = owner[name]
            try:
                decoder.decode(repo.get_chunk(name), name, length)
            except CorruptData as exc:
                problem = repo.damaged_chunk(name, exc)
                verdict = "is damaged" if problem is exc else "cannot be proven from there"
                raise CorruptData(
                    f"{problem} It holds data of {region.describe()}; the image {image} {verdict}."
                ) from exc
            progress.add(length)

    for number in range(nworkers):
        stage.spawn(f"verify-{number}", worker)
    stage.wait()
    result.bytes_checked = progress.done
    record_verified(repo, image, result.chunks)
    progress.set_phase(Phase.DONE, f"image {image} is intact")
    return result


VERIFIED = "verified.json"  # beside the manifest: when every chunk of the image was re-hashed


def record_verified(repo: Repository, image: str, chunks: int) -> None:
    """Remember that the image was verified whole, where the repository can be written (a
    repository mounted read-only for a verify keeps no record: that image stays 'never
    verified', and the interface re-hashes it before a restore, which is the safe side)."""
    data = {"verified": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "chunks": chunks}
    if not repo.exists(repo.image_key(image, "manifest.json")):
        return  # deleted meanwhile: no record that would bring a half image back
    with contextlib.suppress(RepositoryError):
        repo.write_file(repo.image_key(image, VERIFIED), (json.dumps(data) + "\n").encode())


def last_verified(repo: Repository, image: str) -> str | None:
    """When the image was last verified whole, or None (never, or no record)."""
    try:
        data = json.loads(repo.read(repo.image_key(image, VERIFIED)))
    except (OSError, ValueError, CorruptData):  # CorruptData: a sealed record that fails
        return None
    when = data.get("verified") if isinstance(data, dict) else None
    return when if isinstance(when, str) else None


@dataclass
class RegionCheck:
    """How one region of the image was checked against the disk."""

    region: str  # "outside", "p1", ...
    what: str  # "partition 2 (ext4, root)"
    how: str  # "bytes", "files", "nothing" (swap) or "none" (not compared)
    detail: str = ""  # files: what was compared; nothing, none: why

    def line(self) -> str:
        if self.how == "bytes":
            return f"{self.what}: compared byte for byte"
        if self.how == "files":
            return f"{self.what}: compared by files (resized){self.detail}"
        if self.how == "nothing":
            return f"{self.what}: nothing to compare ({self.detail})"
        return f"{self.what}: not compared: {self.detail}"

    def to_json(self) -> dict[str, str]:
        return {
            "region": self.region,
            "what": self.what,
            "how": self.how,
            "detail": self.detail.removeprefix(", "),
        }


def _plan_checks(
    source: RepositorySource, loaded: LoadedImage, disk: Disk, checks: list[RegionCheck]
) -> tuple[list[Window], list[tuple[Region, int, int]]]:
    """The image's windows at the places the disk now holds them (a partition may have moved
    on a disk of another size), and the resized partitions to compare by files instead."""
    same_size = disk.size == loaded.manifest.disk.size
    windows: list[Window] = []
    by_files: list[tuple[Region, int, int]] = []
    for number, region in enumerate(loaded.manifest.regions):
        what = region.describe()
        if region.method == "swap":
            checks.append(
                RegionCheck(
                    region.name,
                    what,
                    "nothing",
                    "swap holds no data to keep; a restore recreates it",
                )
            )
            continue
        start = region.start
        if region.partition is None:
            if not same_size:
                checks.append(
                    RegionCheck(
                        region.name,
                        what,
                        "none",
                        "the disk's size differs from the image's, so its "
                        "table was rewritten to fit",
                    )
                )
                continue
        else:
            part = disk.partition(region.partition)
            if part is None:
                raise VerifyMismatch(
                    f"{disk.node} has no partition {region.partition}, which "
                    f"image {loaded.manifest.name} holds."
                )
            untouched = part.size > region.size and region.fstype not in GROWABLE_FS
            if part.size != region.size and not untouched:
                if can_compare(region.fstype):
                    by_files.append((region, part.start, part.size))
                    checks.append(RegionCheck(region.name, what, "files"))
                else:
                    checks.append(
                        RegionCheck(
                            region.name,
                            what,
                            "none",
                            f"it was resized, and {why_not(region.fstype)}",
                        )
                    )
                continue
            start = part.start
        checks.append(RegionCheck(region.name, what, "bytes"))
        windows += source.regions[number].windows(number, base=start)
    return windows, by_files


def _compare_files(
    loaded: LoadedImage,
    disk: Disk,
    region: Region,
    start: int,
    size: int,
    check: RegionCheck,
    progress: Progress,
    cancel: threading.Event | None,
) -> None:
    """The image's region (on a copy-on-write view) and the disk's partition, both mounted
    read-only, compared by their files."""
    fstype = str(region.fstype)
    name = loaded.manifest.name

    @contextlib.contextmanager
    def image_side() -> Iterator[Path]:
        with (
            CowView(region.size, repo=loaded.repo.location, image=name, region=region.name) as view,
            read_only_loop(view.path) as node,
            mounted_read_only(node, fstype) as root,
        ):
            yield root

    @contextlib.contextmanager
    def disk_side() -> Iterator[Path]:
        with (
            read_only_loop(disk.node, start, size) as node,
            mounted_read_only(node, fstype) as root,
        ):
            yield root

    progress.set_phase(Phase.VERIFY, f"comparing the files of {check.what} (resized)")
    diff = compare_trees(image_side, disk_side, progress.add, cancel)
    if not diff.same:
        raise VerifyMismatch(
            f"{disk.node} differs from image {name} in {check.what}, "
            f"compared by files: {diff.differences[0]}"
            + (f" (and {len(diff.differences) - 1} more)" if len(diff.differences) > 1 else "")
            + "."
        )
    check.detail = f", {diff.files} names, {human_size(diff.nbytes)} of file data"


def verify_against(
    repo_path: str,
    image: str,
    disk_name: str,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
) -> VerifyResult:
    """Read the disk's bytes at the image's used ranges and compare their hashes; compare a
    resized partition by its files; say of every region how it was checked, or why not."""
    progress = progress or Progress()
    repo = Repository.open(repo_path)
    loaded = load_image(repo, image)
    disk = probe_source(disk_name)
    check_not_boot_stick(disk)  # only its identity was probed: nothing to compare
    result = VerifyResult(image)
    source = RepositorySource.from_image(loaded)
    windows, by_files = _plan_checks(source, loaded, disk, result.checks)
    result.skipped = [f"{c.what} ({c.detail})" for c in result.checks if c.how == "none"]
    # both trees of a resized partition are read: about twice its used bytes
    progress.total = sum(w.used_bytes for w in windows) + sum(
        2 * r.used_bytes for r, _, _ in by_files
    )
    mismatches: list[str] = []
    lock = threading.Lock()

    def work(win: Window, data: memoryview) -> None:
        if repo.chunk_name(data) != source.window_hash(win.region, win.number):
            region = source.regions[win.region]
            with lock:
                mismatches.append(f"{region.what} at byte {win.number * region.window}")

    fd = open_direct(disk.node)
    try:
        progress.set_phase(Phase.VERIFY, f"comparing {disk.node} with {image}")
        read_windows(
            fd,
            iter(windows),
            work,
            sector=disk.logical_sector,
            progress=progress,
            cancel=cancel,
            workers=workers,
        )
    finally:
        os.close(fd)
    if mismatches:
        first = sorted(mismatches)[0]
        raise VerifyMismatch(
            f"{disk.node} differs from image {image} in {len(mismatches)} places, first in {first}."
        )
    files = {c.region: c for c in result.checks if c.how == "files"}
    for region, start, size in by_files:
        _compare_files(loaded, disk, region, start, size, files[region.name], progress, cancel)
    progress.adjust_total(progress.done - progress.total)  # the file data was an estimate
    result.bytes_checked = progress.done
    progress.set_phase(
        Phase.DONE,
        f"{disk.node} matches image {image}" + ("" if not result.skipped else " where compared"),
    )
    return result

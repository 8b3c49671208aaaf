"""verify: prove an image is intact (every index and chunk re-hashed), or that a disk holds
the same used data as the image."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from appliance.blockio import open_direct
from appliance.chunkfmt import Decoder, content_hash
from appliance.devices import probe_disk
from appliance.errors import CorruptData, VerifyMismatch
from appliance.jobs.imageread import LoadedImage, load_image
from appliance.manifest import Region, window_ranges
from appliance.model import Disk
from appliance.pipeline import Stage, Window, read_windows, workers_default
from appliance.progress import Progress
from appliance.repo import Repository


@dataclass
class VerifyResult:
    image: str
    chunks: int = 0
    bytes_checked: int = 0
    skipped: list[str] = field(default_factory=list)


def verify_image(repo_path: str, image: str, *, progress: Progress | None = None,
                 cancel: threading.Event | None = None,
                 workers: int | None = None) -> VerifyResult:
    """Re-hash every index (load_image) and every distinct chunk the image uses."""
    progress = progress or Progress()
    repo = Repository.open(repo_path)
    loaded = load_image(repo, image)
    owner: dict[str, tuple[Region, int]] = {}
    for region in loaded.manifest.regions:
        index = loaded.indexes[region.name]
        for number, name in enumerate(index.chunks):
            if name is not None and name not in owner:
                length = min(index.window, region.size - number * index.window)
                owner[name] = (region, length)
    result = VerifyResult(image, chunks=len(owner))
    progress.total = sum(length for _, length in owner.values())
    progress.set_phase("verify", f"checking {len(owner)} chunks of {image}")
    names: queue.Queue[object] = queue.Queue()
    for name in owner:
        names.put(name)
    nworkers = workers or workers_default()
    stage = Stage(progress, cancel)

    def worker() -> None:
        decoder = Decoder()
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
                raise CorruptData(f"{exc} It holds data of {region.describe()}; the image "
                                  f"{image} is damaged.") from exc
            progress.add(length)

    for number in range(nworkers):
        stage.spawn(f"verify-{number}", worker)
    stage.wait()
    result.bytes_checked = progress.done
    progress.set_phase("done", f"image {image} is intact")
    return result


def _windows(loaded: LoadedImage, disk: Disk, skipped: list[str]) -> Iterator[Window]:
    """The image's windows at the places the disk now holds them: a partition may have moved
    (a restore onto another size); one that was resized cannot be compared byte for byte."""
    same_size = disk.size == int(loaded.manifest.disk["size"])
    for number, region in enumerate(loaded.manifest.regions):
        if region.method == "swap":
            continue
        start = region.start
        if region.partition is None:
            if not same_size:
                skipped.append("the partition table (the disk's size differs from the "
                               "image's)")
                continue
        else:
            part = disk.partition(region.partition)
            if part is None:
                raise VerifyMismatch(f"{disk.node} has no partition {region.partition}, which "
                                     f"image {loaded.manifest.name} holds.")
            if part.size != region.size:
                skipped.append(f"{region.describe()}, which was resized to fit this disk")
                continue
            start = part.start
        index = loaded.indexes[region.name]
        by_window = window_ranges(index.used, index.window, region.size)
        for win in sorted(by_window):
            yield Window(number, win, start + win * index.window,
                         min(index.window, region.size - win * index.window),
                         tuple(by_window[win]))


def verify_against(repo_path: str, image: str, disk_name: str, *,
                   progress: Progress | None = None, cancel: threading.Event | None = None,
                   workers: int | None = None) -> VerifyResult:
    """Read the disk's bytes at the image's used ranges and compare their hashes."""
    progress = progress or Progress()
    repo = Repository.open(repo_path)
    loaded = load_image(repo, image)
    disk = probe_disk(disk_name)
    result = VerifyResult(image)
    windows = list(_windows(loaded, disk, result.skipped))
    progress.total = sum(w.used_bytes for w in windows)
    zero: dict[int, str] = {}
    mismatches: list[str] = []
    lock = threading.Lock()

    def work(win: Window, data: memoryview) -> None:
        region = loaded.manifest.regions[win.region]
        expected = loaded.indexes[region.name].chunks[win.number]
        if expected is None:
            if win.length not in zero:
                zero[win.length] = content_hash(bytes(win.length))
            expected = zero[win.length]
        if content_hash(data) != expected:
            with lock:
                mismatches.append(f"{region.describe()} at byte "
                                  f"{win.number * loaded.indexes[region.name].window}")

    fd = open_direct(disk.node)
    try:
        progress.set_phase("verify", f"comparing {disk.node} with {image}")
        read_windows(fd, iter(windows), work, sector=disk.logical_sector, progress=progress,
                     cancel=cancel, workers=workers)
    finally:
        os.close(fd)
    if mismatches:
        first = sorted(mismatches)[0]
        raise VerifyMismatch(f"{disk.node} differs from image {image} in {len(mismatches)} "
                             f"places, first in {first}.")
    result.bytes_checked = progress.total
    progress.set_phase("done", f"{disk.node} matches image {image}")
    return result

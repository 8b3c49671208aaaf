"""import: store an image that is already somewhere else as an image of a repository.

The bytes come from an image source (io/source.py): an image of another repository (moving
images from a USB drive to the office's repository), or another tool's image (a Clonezilla
folder). They go through the same chunk step as a save (jobs/chunkwriter.py), so an import
is deduplicated against everything the repository holds, and the image is complete only
when every chunk, index and the manifest are durable. The source checks its own bytes as it
reads them (our chunks by their hashes, partclone's blocks by their checksums); nothing is
written anywhere but into the repository.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from appliance import __version__
from appliance.errors import ApplianceError, ImageError, UnsupportedImage
from appliance.io.pipeline import WINDOW, Window, run_windows, workers_default
from appliance.io.source import ImageSource, RepositorySource
from appliance.jobs.chunkwriter import ChunkWriter, Counters
from appliance.progress import Phase, Progress
from appliance.repo.image import load_image, load_manifest
from appliance.repo.imagelog import ImageLog
from appliance.repo.manifest import Index, Manifest, Region, index_hash
from appliance.repo.records import DiskRecord, SaveStats, TableRecord
from appliance.repo.repository import Repository, check_image_name, holds_repository


@dataclass
class Incoming:
    """An image from elsewhere: what its manifest will record, and where its bytes are."""

    origin: str  # for the log and sentences: "image pc1 of the repository /media/usb/images"
    disk: DiskRecord
    table: TableRecord | None
    regions: list[Region]  # in the order of source.regions; used_bytes set, no index yet
    source: ImageSource
    created: str | None = None  # when the original was made (kept in the log)


def _windows(incoming: Incoming) -> Iterator[Window]:
    for number, region in enumerate(incoming.source.regions):
        yield from region.windows(number)


def _fill(source: ImageSource) -> Callable[[Window, memoryview], None]:
    def fill(win: Window, view: memoryview) -> None:
        data = source.read_window(win.region, win.number)
        if data is None:
            view[:] = bytes(len(view))
        else:
            view[: len(data)] = data
            if len(data) < len(view):
                view[len(data) :] = bytes(len(view) - len(data))

    return fill


def import_image(
    location: str,
    name: str,
    incoming: Incoming,
    *,
    create: bool = False,
    level: int = 3,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
) -> Manifest:
    """Store `incoming` as image `name` of the repository at `location`."""
    progress = progress or Progress()
    started = time.monotonic()
    check_image_name(name)
    for region in incoming.source.regions:
        if region.window != WINDOW:
            raise ImageError(
                f"{incoming.origin} is cut into windows of {region.window} bytes; this "
                f"appliance stores {WINDOW}-byte windows and cannot import it."
            )
    repo = Repository.open_for_save(location, create=create)
    with repo.lock(f"import {name} from {incoming.origin}"):
        key = repo.image_key(name, "manifest.json")
        if repo.exists(key):
            old = load_manifest(repo, name)
            state = "an image" if old.complete else "an unfinished image"
            raise ImageError(
                f"{state.capitalize()} named {name} is already in {repo.where}; choose "
                "another name with --as, or delete it first."
            )
        repo.remove_tmp_files()
        regions = [
            dataclasses.replace(r, index="", index_hash="", stored_windows=0)
            for r in incoming.regions
        ]
        manifest = Manifest(
            name=name,
            disk=incoming.disk,
            table=incoming.table,
            regions=regions,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            tool_version=__version__,
        )
        repo.write_file(key, manifest.to_json().encode())
        log = ImageLog(repo, name)
        made = f" (made {incoming.created})" if incoming.created else ""
        log.write(f"import of {incoming.origin}{made} started")
        chunks: list[list[str | None]] = [
            [None] * _count(region.size) for region in incoming.source.regions
        ]
        stats = Counters()
        progress.total = sum(sum(n for _, n in r.used) for r in incoming.source.regions)
        progress.set_phase(Phase.SAVE, f"importing {incoming.origin}")
        run_windows(
            _windows(incoming),
            _fill(incoming.source),
            ChunkWriter(repo, chunks, level, stats),
            progress=progress,
            cancel=cancel,
            workers=workers or workers_default(),
        )
        progress.set_phase(Phase.SYNC, "making the image durable")
        repo.sync()
        for record, src, stored in zip(regions, incoming.source.regions, chunks, strict=True):
            index = Index(record.name, WINDOW, record.size, list(src.used), stored)
            blob = index.encode()
            record.index = f"{record.name}.idx"
            record.index_hash = index_hash(blob)
            record.stored_windows = sum(1 for c in stored if c is not None)
            repo.write_file(repo.image_key(name, record.index), blob)
        manifest.stats = SaveStats(
            used_bytes=manifest.used_bytes,
            new_bytes=stats.new_bytes,
            new_chunks=stats.new_chunks,
            reused_chunks=stats.reused_chunks,
            zero_windows=stats.zero_windows,
            seconds=round(time.monotonic() - started, 3),
            repaired_chunks=stats.repaired_chunks,
        )
        manifest.complete = True
        manifest.finished = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        repo.write_file(key, manifest.to_json().encode())
        log.write(
            f"import complete: {manifest.used_bytes} bytes used, {stats.new_chunks} new "
            f"chunks ({stats.new_bytes} bytes), {stats.reused_chunks} already stored"
        )
        progress.set_phase(Phase.DONE, f"image {name} imported")
        return manifest


def _count(size: int) -> int:
    return -(-size // WINDOW)


def from_repository(location: str, image: str) -> Incoming:
    """An image of another repository, every chunk checked against its name as it is read;
    its proofs come along (the bytes are the same, proven by their hashes)."""
    loaded = load_image(Repository.open(location), image)
    source = RepositorySource.from_image(loaded)
    manifest = loaded.manifest
    return Incoming(
        f"image {image} of the repository {loaded.repo.where}",
        manifest.disk,
        manifest.table,
        [dataclasses.replace(r) for r in manifest.regions],
        source,
        manifest.created,
    )


def images_at(source: str) -> list[str]:
    """The images an import from `source` can take: the complete images of a repository."""
    if holds_repository(source):
        repo = Repository.open(source)
        names = []
        for name in repo.image_names():
            try:
                if load_manifest(repo, name).complete:
                    names.append(name)
            except ApplianceError:
                continue  # a damaged image is not imported; `images` names it
        return names
    raise UnsupportedImage(
        f"{source} holds no images this appliance can import (it is not an image "
        "repository of this appliance)."
    )


def incoming_from(source: str, image: str) -> Incoming:
    if holds_repository(source):
        return from_repository(source, image)
    images_at(source)  # the sentence of what is there
    raise UnsupportedImage(f"{source} holds no image named {image}.")

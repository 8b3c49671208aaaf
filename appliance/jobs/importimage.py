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
import os
import threading
import time
from collections.abc import Callable, Iterator

from appliance import __version__
from appliance.errors import ApplianceError, ImageError, UnsupportedImage
from appliance.fs import check as fscheck
from appliance.io.pipeline import WINDOW, Window, run_windows, store_workers_default
from appliance.io.source import ImageSource, RepositorySource
from appliance.jobs import proof, shelfimport
from appliance.jobs.chunkwriter import ChunkWriter, Counters, complete
from appliance.jobs.incoming import Incoming
from appliance.progress import Phase, Progress
from appliance.repo.image import load_image, load_manifest
from appliance.repo.imagelog import ImageLog
from appliance.repo.manifest import Index, Manifest, Region, index_hash
from appliance.repo.repository import Repository, check_image_name, holds_repository


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
    """Store `incoming` as image `name` of the repository at `location`; its source is
    closed after, stored or not."""
    with incoming:
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
                workers=workers or store_workers_default(),
            )
            progress.set_phase(Phase.SYNC, "making the image durable")
            repo.sync()
            indexes = []
            for record, src, stored in zip(regions, incoming.source.regions, chunks, strict=True):
                index = Index(record.name, WINDOW, record.size, list(src.used), stored)
                indexes.append(index)
                blob = index.encode()
                record.index = f"{record.name}.idx"
                record.index_hash = index_hash(blob)
                record.stored_windows = sum(1 for c in stored if c is not None)
                repo.write_file(repo.image_key(name, record.index), blob)
            warnings = prove_imported(repo, regions, indexes, progress, log.write)
            complete(repo, manifest, stats, started, log.write, "import", warnings=warnings)
            progress.set_phase(Phase.DONE, f"image {name} imported")
            return manifest


def prove_imported(
    repo: Repository,
    regions: list[Region],
    indexes: list[Index],
    progress: Progress,
    log: Callable[[str], None],
) -> list[str]:
    """Prove, as a save does, each region mapped by another tool's used-block map (a
    partclone stream) that comes with no proof: its filesystem's own checker, read-only, on
    the stored image (jobs/proof.py's view). One warning per region not proven."""
    todo = [
        (region, index)
        for region, index in zip(regions, indexes, strict=True)
        if region.proof is None and proof.proven_kind(region)
    ]
    if not todo:
        return []
    progress.set_phase(Phase.PROOF, "checking the imported filesystems on the image")
    view = proof.ProofView(repo, os.environ.get("APPLIANCE_TMP", "/var/tmp"))
    warnings = []
    try:
        for region, index in todo:
            if fscheck.checker_for(region.fstype) is None:
                result = fscheck.CheckResult(
                    "-", "skipped", 0.0, f"no checker is known for {region.fstype or 'it'}"
                )
            else:
                try:
                    result = proof.prove_stored(view, region, index)
                finally:
                    view.withdraw(region)
            region.proof = result.to_json()
            log(
                f"{region.name}: {result.tool} on the image: {result.result} in "
                f"{result.seconds:.1f} s" + (f" ({result.detail})" if result.detail else "")
            )
            if result.result == "failed":
                warnings.append(
                    f"{region.describe()}: {result.tool} finds errors on the imported image "
                    f"({result.detail}); the original image holds them too"
                )
            elif result.result == "skipped":
                warnings.append(
                    f"{region.describe()}: {result.tool} could not run, so it is unproven: "
                    f"{result.detail}"
                )
    finally:
        view.close()
    return warnings


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
    """The images an import from `source` can take: the complete images of a repository,
    or the Clonezilla and Rescuezilla image folders there (or `source` itself)."""
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
    folders = shelfimport.images_in(source)
    if folders:
        return folders
    raise UnsupportedImage(
        f"{source} holds no images this appliance can import (it is neither an image "
        "repository of this appliance nor a Clonezilla or Rescuezilla image folder)."
    )


def incoming_from(source: str, image: str) -> Incoming:
    if holds_repository(source):
        return from_repository(source, image)
    folder = shelfimport.folder_named(source, image)
    if folder is not None:
        return shelfimport.from_clonezilla(folder)
    images_at(source)  # the sentence of what is there
    raise UnsupportedImage(f"{source} holds no image named {image}.")

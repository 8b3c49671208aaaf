"""Before the first write of a restore: is the image whole enough to finish?

A restore erases its target; finding a missing chunk halfway leaves a broken disk for
nothing. So before any write: the manifest is intact (its own hash, checked when it was
loaded), its indexes match their hashes (checked by load_image), the partition table the
manifest records is the one the saved table bytes hold, every chunk the plan reads is stored
whole (header and length), and with `verify_first` every chunk is re-hashed as well. Each
refusal is one sentence naming the partition it hits; nothing has been written then.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.errors import CorruptData
from appliance.jobs.verify import verify_image
from appliance.progress import Phase, Progress, ProgressEvent
from appliance.repo.manifest import Region
from appliance.tools import run

if TYPE_CHECKING:
    from appliance.jobs.restore import RestorePlan

# sfdisk fields that name the device a table was read from rather than the table itself
_DEVICE_FIELDS = ("device", "node")
CHECK_THREADS = 8
FILE_SECTOR = 512


def precheck(
    plan: RestorePlan,
    *,
    verify_first: bool = False,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> None:
    """Refuse (CorruptData, exit 9) an image the restore could not finish; write nothing."""
    progress = progress or Progress()
    name = plan.image.manifest.name
    progress.set_phase(Phase.CHECK, f"checking that image {name} is whole")
    check_chunks_present(plan)
    check_table(plan)
    if verify_first:
        verify_image(plan.image.repo.location, name, progress=_as_check(progress), cancel=cancel)
        progress.set_phase(Phase.CHECK, f"every chunk of image {name} was re-hashed")


def needed_chunks(plan: RestorePlan) -> dict[str, Region]:
    """Every chunk the restore reads, with the first region that uses it."""
    manifest = plan.image.manifest
    out: dict[str, Region] = {}
    for place in plan.placements():
        if place.chunk is not None:
            out.setdefault(place.chunk, manifest.regions[place.region])
    for region in plan.shrunk_regions():  # read whole through a copy-on-write view
        for chunk in plan.image.indexes[region.name].chunks:
            if chunk is not None:
                out.setdefault(chunk, region)
    return out


def check_chunks_present(plan: RestorePlan) -> None:
    """Every chunk the plan needs is stored with the length its header says."""
    needed = needed_chunks(plan)
    repo = plan.image.repo
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        present = dict(zip(needed, pool.map(repo.has_chunk, needed), strict=True))
    missing = [name for name, ok in present.items() if not ok]
    if not missing:
        return
    manifest = plan.image.manifest
    hit: list[str] = []
    for name in missing:
        what = needed[name].describe()
        if what not in hit:
            hit.append(what)
    raise CorruptData(
        f"Image {manifest.name} is damaged: {len(missing)} chunk"
        f"{'s are' if len(missing) > 1 else ' is'} missing or truncated "
        f"(data of {', '.join(hit)}); nothing was written to "
        f"{plan.target.node}."
    )


def check_table(plan: RestorePlan) -> None:
    """The table the manifest records is the one its saved table bytes hold."""
    manifest = plan.image.manifest
    recorded = manifest.table.sfdisk if manifest.table else None
    if not recorded or manifest.disk.logical_sector != FILE_SECTOR:
        # no table, a manifest from before the table was recorded, or a disk with larger
        # sectors (sfdisk reads a file with 512-byte sectors and has no option to change it)
        return
    outside = next((r for r in manifest.regions if r.partition is None), None)
    if outside is None:
        return
    with tempfile.TemporaryDirectory(prefix="appliance-table-") as tmp:
        path = Path(tmp) / "table.img"
        _rebuild_outside(plan, outside, path, manifest.disk.size)
        proc = run(["sfdisk", "--json", str(path)], check=False)
    saved = None
    if proc.returncode == 0:
        try:
            saved = json.loads(proc.stdout)["partitiontable"]
        except (ValueError, KeyError):
            saved = None
    if saved is None or _comparable(saved) != _comparable(recorded):
        raise CorruptData(
            f"Image {manifest.name} is damaged: the partition table saved in "
            f"{outside.describe()} differs from the one its manifest records; "
            f"nothing was written to {plan.target.node}."
        )


def _rebuild_outside(plan: RestorePlan, outside: Region, path: Path, size: int) -> None:
    """The saved table and boot areas at their places in a sparse file of the disk's size,
    read through the image source (every chunk checked against its name)."""
    source = plan.source
    number = plan.image.manifest.regions.index(outside)
    with open(path, "wb") as handle:
        handle.truncate(size)
        for win in source.regions[number].windows(number):
            try:
                data = source.read_window(number, win.number)
            except CorruptData as exc:
                raise CorruptData(f"{exc} Nothing was written to {plan.target.node}.") from exc
            if data is None:
                continue  # zeros: the sparse file already reads as zeros there
            for offset, count in win.used:
                handle.seek(win.offset + offset)
                handle.write(data[offset : offset + count])


def _comparable(table: dict[str, Any]) -> dict[str, Any]:
    """A sfdisk --json table without the names of the device it was read from."""
    out = {k: v for k, v in table.items() if k not in _DEVICE_FIELDS}
    out["partitions"] = [
        {k: v for k, v in part.items() if k not in _DEVICE_FIELDS}
        for part in table.get("partitions", [])
    ]
    return out


def _as_check(progress: Progress) -> Progress:
    """A progress for the re-hash whose events all say phase "check"."""
    outer = progress.listener

    def forward(event: ProgressEvent) -> None:
        if outer is not None:
            outer(dataclasses.replace(event, phase=Phase.CHECK))

    return Progress(forward if outer is not None else None, interval=progress.interval)

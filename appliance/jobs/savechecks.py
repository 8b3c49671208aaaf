"""What a save checks before it starts and what it must tell afterwards.

Before: the image is likely to fit in the repository's free space (used bytes x the
compression seen in this repository, less what an earlier image of the same disk already
stores). After: warnings, short enough to print one per line on an 80-column console, for
partitions copied whole (and what that costs) and for unreadable sectors (and the files they
hit, where the filesystem can say (fsfiles); the full lists go to the image's log.txt).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from appliance.disk.model import Disk
from appliance.errors import ApplianceError, RepositoryError
from appliance.fs.files import files_at, used_bytes
from appliance.fs.usedmap import PARTCLONE_PROGRAM
from appliance.plan.preflight import free_space
from appliance.repo.image import load_manifest
from appliance.repo.manifest import Manifest, Region
from appliance.repo.repository import Repository
from appliance.units import human_size

# stored bytes per used byte when the repository has no image to learn from (zstd -3 on
# typical system disks stores 40-60 %: assume the worse end)
DEFAULT_RATIO = 0.6
# an image counts for the ratio when it stored mostly new chunks (a first save of a disk)
MOSTLY_NEW = 0.9
MAX_RANGES = 5  # unreadable areas listed as warnings (all of them in log.txt)
MAX_FILES = 8  # files hit listed as warnings
WARNING_WIDTH = 70  # a warning and its "warning: " prefix fit an 80-column console


def _earlier_images(repo_path: Path) -> list[Manifest]:
    """Every complete image's manifest; [] when there is no repository."""
    try:
        repo = Repository.open(repo_path)
    except ApplianceError:
        return []
    out: list[Manifest] = []
    for name in repo.image_names():
        try:
            manifest = load_manifest(repo, name)
        except ApplianceError:
            continue  # a damaged manifest teaches nothing; `images` reports it
        if manifest.complete:
            out.append(manifest)
    return out


def compression_ratio(images: list[Manifest]) -> float:
    """Stored bytes per used byte, from the earlier saves that stored mostly new chunks."""
    stored = used = 0
    for image in images:
        stats = image.figures
        new, reused = stats.new_chunks, stats.reused_chunks
        if new and new >= MOSTLY_NEW * (new + reused):
            stored += stats.new_bytes
            used += stats.used_bytes
    return min(1.0, stored / used) if used > 0 and stored > 0 else DEFAULT_RATIO


def estimate_new_bytes(repo_path: Path, disk: Disk, used: int) -> tuple[int, float]:
    """Bytes the save will likely add, and the compression ratio assumed."""
    images = _earlier_images(repo_path)
    ratio = compression_ratio(images)
    same = [
        image.used_bytes
        for image in images
        if (image.disk.serial, image.disk.size) == (disk.serial, disk.size)
    ]
    if same:  # an earlier image of this disk: deduplication reuses what it stored
        used = max(0, used - max(same))
    return int(used * ratio), ratio


def check_free_space(repo_path: Path, disk: Disk, image: str, used: int) -> None:
    """Refuse (exit 6) a save that clearly cannot fit, before anything is written."""
    free = free_space(repo_path)
    if free is None:
        return
    estimate, ratio = estimate_new_bytes(repo_path, disk, used)
    if estimate > free:
        raise RepositoryError(
            f"Image {image} needs about {human_size(estimate)} ({human_size(used)} used, "
            f"stored at {ratio:.0%}) and the repository at {repo_path} has "
            f"{human_size(free)} free; free some space or use another repository."
        )


# -- warnings ---------------------------------------------------------------------------
def _short(region: Region) -> str:
    return f"partition {region.partition} ({region.fstype or 'unformatted'})"


def copied_whole_warnings(disk: Disk, regions: list[Region]) -> list[str]:
    """A filesystem the appliance can map but copied whole: why, and the bytes it costs."""
    out: list[str] = []
    for region in regions:
        if region.partition is None or region.method != "raw":
            continue
        if region.fstype not in PARTCLONE_PROGRAM:
            continue  # LUKS, BitLocker, unformatted: whole is the only way, preflight says so
        if (region.proof or {}).get("result") == "failed":
            continue  # saved again whole after its proof failed: proof_warnings says so
        if region.note:
            why = "map unreadable"
        elif region.fstype == "ntfs":
            why = "dirty NTFS"
        else:
            why = "no map"
        used = used_bytes(_node(disk, region.partition), region.fstype)
        if used is not None and used < region.size:
            cost = f"{human_size(region.size - used)} extra"
        else:
            cost = f"{human_size(region.size)} in all"
        out.append(f"{_short(region)} copied whole ({why}), {cost}")
    return out


def _node(disk: Disk, number: int) -> str:
    for part in disk.partitions:
        if part.number == number:
            return part.node
    return ""


def unreadable_warnings(
    disk: Disk,
    regions: list[Region],
    bad: list[tuple[int, int]],
    log: Callable[[str], None],
    *,
    done: str = "saved",
    rest: str = "the log.txt",
) -> list[str]:
    """Each unreadable area (the first few), then the files they hit; all of them in log.
    `done`: what happened to them ("saved" as zeros, "copied"); `rest`: where all are."""
    if not bad:
        return []
    out: list[str] = []
    by_region: dict[str, list[tuple[int, int]]] = {}
    for start, length in sorted(bad):
        region = _region_at(regions, start)
        where = _short(region) if region and region.partition is not None else "the table area"
        log(f"unreadable: {length} bytes at byte {start} of the disk ({where}), {done} as zeros")
        if len(out) < MAX_RANGES:
            out.append(f"{human_size(length)} unreadable at disk byte {start}, {where}")
        if region is not None and region.partition is not None:
            by_region.setdefault(region.name, []).append((start - region.start, length))
    if len(bad) > MAX_RANGES:
        out.append(f"{len(bad) - MAX_RANGES} more unreadable areas; see {rest}")
    out.append(f"unreadable areas were {done} as zeros")
    hits: list[str] = []
    for region in regions:
        if region.name in by_region and region.partition is not None:
            files = files_at(_node(disk, region.partition), region.fstype, by_region[region.name])
            for path in files:
                log(f"unreadable sectors hit {path} on {_short(region)}")
            hits += [
                _fit(f"partition {region.partition}: unreadable sectors hit ", path)
                for path in files
            ]
    out += hits[:MAX_FILES]
    if len(hits) > MAX_FILES:
        out.append(f"{len(hits) - MAX_FILES} more files hit; see {rest}")
    return out


def _fit(prefix: str, path: str) -> str:
    """`prefix` + `path`, the path cut from the left to fit a warning line."""
    room = WARNING_WIDTH - len(prefix)
    return prefix + (path if len(path) <= room else "..." + path[-(room - 3) :])


def _region_at(regions: list[Region], offset: int) -> Region | None:
    inside = [
        r for r in regions if r.partition is not None and r.start <= offset < r.start + r.size
    ]
    return inside[0] if inside else next((r for r in regions if r.partition is None), None)

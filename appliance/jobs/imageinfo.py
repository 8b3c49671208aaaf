"""info: everything an image's manifest, indexes and log say about it, as data.

Read-only and lock-free: it reads the manifest, checks each index against its hash (an index
that does not match is reported, not raised), and takes the tail of log.txt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appliance.errors import CorruptData
from appliance.jobs.verify import last_verified
from appliance.repo.image import load_manifest
from appliance.repo.imagelog import read_log
from appliance.repo.manifest import Index, Manifest, Region, index_hash
from appliance.repo.repository import Repository

LOG_TAIL = 15

METHODS = {
    "table": "kept byte for byte",
    "partclone": "mapped: used blocks only",
    "raw": "whole: every byte",
    "swap": "swap: recreated, not copied",
}


@dataclass
class RegionInfo:
    region: Region
    index_ok: bool
    index_problem: str | None
    proof: Any  # the region's proof when the manifest records one (optional field)

    def method_text(self) -> str:
        """How the region was saved, and why when it was copied whole."""
        text = METHODS.get(self.region.method, self.region.method)
        if self.region.method == "raw":
            why = self.region.note or (
                "no used-block map for this filesystem"
                if self.region.fstype
                else "unformatted or unknown content"
            )
            text = f"{text} ({why.removeprefix('copied whole: ')})"
        return text

    def to_json(self) -> dict[str, Any]:
        r = self.region
        return {
            "name": r.name,
            "partition": r.partition,
            "start": r.start,
            "size": r.size,
            "fstype": r.fstype,
            "fsversion": r.fsversion,
            "label": r.label,
            "uuid": r.uuid,
            "method": r.method,
            "method_text": self.method_text(),
            "note": r.note,
            "used_bytes": r.used_bytes,
            "stored_windows": r.stored_windows,
            "index_ok": self.index_ok,
            "index_problem": self.index_problem,
            "proof": self.proof,
        }


@dataclass
class ImageInfo:
    manifest: Manifest
    regions: list[RegionInfo]
    log_tail: list[str] = field(default_factory=list)
    verified: str | None = None  # when every chunk was last re-hashed (None: no record)

    @property
    def read_errors(self) -> list[tuple[int, int]]:
        return list(self.manifest.figures.read_errors)

    @property
    def warnings(self) -> list[str]:
        """What the save warned about: its own list when it has one, else what follows from
        the regions (copied whole, unreadable areas) and the indexes."""
        found = list(self.manifest.figures.warnings)
        if not found:
            found = [
                f"{r.region.describe()} was copied whole: {r.method_text()}"
                for r in self.regions
                if r.region.method == "raw" and r.region.partition is not None
            ]
            if self.read_errors:
                found.append(f"{len(self.read_errors)} unreadable areas were saved as zeros")
        found += [r.index_problem for r in self.regions if r.index_problem]
        if not self.manifest.complete:
            found.append("the save did not finish: this image cannot be restored")
        return found

    def to_json(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "image": m.name,
            "complete": m.complete,
            "created": m.created,
            "finished": m.finished,
            "tool_version": m.tool_version,
            "disk": m.disk.to_dict(),
            "table": m.table.to_dict() if m.table else None,
            "regions": [r.to_json() for r in self.regions],
            "stats": m.stats.to_dict() if m.stats else {},
            "read_errors": [list(r) for r in self.read_errors],
            "warnings": self.warnings,
            "log_tail": self.log_tail,
            "verified": self.verified,
        }


def _check_index(repo: Repository, manifest: Manifest, region: Region) -> str | None:
    """None when the region's index is there, matches its hash and fits; else why not."""
    if not region.index:
        return None if not manifest.complete else f"{region.describe()} has no index"
    try:
        key = repo.image_key(manifest.name, region.index)
        blob = repo.read(key)
    except (OSError, CorruptData):
        return f"the index of {region.describe()} is missing or unreadable"
    if index_hash(blob) != region.index_hash:
        return f"the index of {region.describe()} does not match its hash"
    try:
        index = Index.decode(blob, repo.describe(key))
    except CorruptData:
        return f"the index of {region.describe()} cannot be decoded"
    if index.size != region.size:
        return f"the index of {region.describe()} does not fit its region"
    return None


def log_tail(repo: Repository, name: str, lines: int = LOG_TAIL) -> list[str]:
    try:
        return read_log(repo, name)[-lines:]
    except OSError:
        return []


def image_info(repo_path: str, name: str) -> ImageInfo:
    """The image's manifest, each region with its index checked, and its log's tail."""
    repo = Repository.open(repo_path)
    manifest = load_manifest(repo, name)
    regions = []
    for region in manifest.regions:
        problem = _check_index(repo, manifest, region)
        regions.append(RegionInfo(region, problem is None, problem, getattr(region, "proof", None)))
    return ImageInfo(manifest, regions, log_tail(repo, name), last_verified(repo, name))

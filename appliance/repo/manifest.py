"""An image's manifest and its per-region chunk indexes, as data and as files.

manifest.json (JSON, stable):
  format "appliance-image", version 1, name, complete, created, finished, tool_version,
  disk  {name, node, model, serial, size, logical_sector, physical_sector},
  table {type, id, first_lba, last_lba, partitions: [{number, start, size, type, kind, guid,
         name, flags}]}            (null when the disk has no partition table)
  regions [{name, partition, start, size, fstype, fsversion, label, uuid, method, used_bytes,
            stored_windows, index, index_hash, tail_start, note,
            proof {tool, result, seconds, detail[, source]} or null (absent in older images)}]
  stats {used_bytes, new_bytes, new_chunks, reused_chunks, zero_windows, seconds,
         read_errors: [[offset, length], ...], repaired_chunks, warnings: [line, ...]}
  manifest_hash  blake3 of the canonical JSON (sorted keys, no spaces) of every other field;
                 written by this version, checked when present (older manifests lack it)
Offsets and sizes are bytes from the start of the disk. A region's index (<name>.idx) is a zstd
frame holding JSON {format "appliance-index", version 1, region, window, size,
used: [[offset, length], ...] (relative to the region), chunks: [hash or null per window]}.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import blake3
import zstandard

from appliance.errors import CorruptData, ImageError
from appliance.repo.records import DiskRecord, SaveStats, TableRecord

FORMAT = "appliance-image"
INDEX_FORMAT = "appliance-index"
VERSION = 1


@dataclass
class Region:
    name: str  # "outside", "p1", "p2", ...
    partition: int | None  # partition number, None for "outside"
    start: int
    size: int
    method: str  # "table", "partclone", "raw", "swap"
    fstype: str | None = None
    fsversion: str | None = None
    label: str | None = None
    uuid: str | None = None
    used_bytes: int = 0
    stored_windows: int = 0
    index: str = ""
    index_hash: str = ""
    tail_start: int | None = None  # "outside" of a GPT disk: where the backup table begins
    note: str | None = None  # why a filesystem was copied raw, for the log and the UI
    proof: dict[str, Any] | None = None  # its checker's verdict on the image (jobs/proof.py)

    def describe(self) -> str:
        if self.partition is None:
            return "the partition table and boot area"
        what = self.fstype or "unformatted"
        return f"partition {self.partition} ({what}{', ' + self.label if self.label else ''})"


@dataclass
class Manifest:
    name: str
    disk: DiskRecord
    table: TableRecord | None
    regions: list[Region]
    created: str
    tool_version: str
    complete: bool = False
    finished: str | None = None
    stats: SaveStats | None = None  # None until the save completes ({} in the file)

    def to_json(self) -> str:
        data = {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "disk": self.disk.to_dict(),
            "table": self.table.to_dict() if self.table else None,
            "regions": [asdict(region) for region in self.regions],
            "created": self.created,
            "tool_version": self.tool_version,
            "complete": self.complete,
            "finished": self.finished,
            "stats": self.stats.to_dict() if self.stats else {},
        }
        data["manifest_hash"] = manifest_hash(data)
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ImageError(f"{where} is not an image manifest of this appliance.")
            if data.get("version") != VERSION:
                raise ImageError(
                    f"The image at {where} has format version {data.get('version')};"
                    f" this appliance reads version {VERSION}."
                )
            recorded = data.get("manifest_hash")
            if recorded is not None and recorded != manifest_hash(data):
                raise CorruptData(
                    f"The manifest {where} does not match its own hash: it was "
                    "edited or damaged after the save."
                )
            regions = [Region(**region) for region in data["regions"]]
            return cls(
                name=data["name"],
                disk=DiskRecord.from_dict(data["disk"]),
                table=TableRecord.from_dict(data["table"]),
                regions=regions,
                created=data["created"],
                tool_version=data["tool_version"],
                complete=bool(data["complete"]),
                finished=data.get("finished"),
                stats=SaveStats.from_dict(data.get("stats")),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ImageError(f"The manifest {where} is damaged and cannot be read.") from exc

    def region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise ImageError(f"The image {self.name} has no region {name}.")

    @property
    def figures(self) -> SaveStats:
        """The save's figures (all zero for an image whose save has not finished)."""
        return self.stats or SaveStats()

    @property
    def used_bytes(self) -> int:
        return sum(region.used_bytes for region in self.regions)


@dataclass
class Index:
    region: str
    window: int
    size: int
    used: list[tuple[int, int]]
    chunks: list[str | None]

    def encode(self) -> bytes:
        data = {
            "format": INDEX_FORMAT,
            "version": VERSION,
            "region": self.region,
            "window": self.window,
            "size": self.size,
            "used": [list(r) for r in self.used],
            "chunks": self.chunks,
        }
        return zstandard.ZstdCompressor(level=3).compress(json.dumps(data).encode())

    @classmethod
    def decode(cls, blob: bytes, where: str) -> Index:
        try:
            data = json.loads(zstandard.ZstdDecompressor().decompress(blob))
            if data.get("format") != INDEX_FORMAT or data.get("version") != VERSION:
                raise CorruptData(f"The index {where} is not an index of this appliance.")
            return cls(
                region=data["region"],
                window=int(data["window"]),
                size=int(data["size"]),
                used=[(int(a), int(b)) for a, b in data["used"]],
                chunks=list(data["chunks"]),
            )
        except (zstandard.ZstdError, ValueError, KeyError, TypeError) as exc:
            raise CorruptData(f"The index {where} is damaged and cannot be read.") from exc


def manifest_hash(data: dict[str, Any]) -> str:
    """blake3 of the canonical JSON of a manifest's fields, its own hash field left out."""
    rest = {key: value for key, value in data.items() if key != "manifest_hash"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return blake3.blake3(text.encode()).hexdigest()


def index_hash(blob: bytes) -> str:
    return blake3.blake3(blob).hexdigest()


def window_ranges(
    used: list[tuple[int, int]], window: int, size: int
) -> dict[int, list[tuple[int, int]]]:
    """Split region-relative used ranges by window: window number -> ranges relative to it."""
    out: dict[int, list[tuple[int, int]]] = {}
    for start, length in used:
        pos, end = start, min(start + length, size)
        while pos < end:
            number = pos // window
            stop = min(end, (number + 1) * window)
            out.setdefault(number, []).append((pos - number * window, stop - pos))
            pos = stop
    return out

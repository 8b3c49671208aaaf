"""The manifest's records of the saved disk, its partition table and the save's figures, as
typed data. Their JSON (`to_dict`/`from_dict`) is repository format v1 and never changes:
keys in the same order, old manifests (missing keys, empty stats) still load."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class DiskRecord:
    """The disk an image was saved from, as it was then."""

    name: str
    node: str
    size: int
    logical_sector: int = 512
    physical_sector: int = 512
    model: str | None = None
    serial: str | None = None

    @property
    def what(self) -> str:
        """The disk for sentences: its model, else its kernel name."""
        return self.model or self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "node": self.node,
            "model": self.model,
            "serial": self.serial,
            "size": self.size,
            "logical_sector": self.logical_sector,
            "physical_sector": self.physical_sector,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiskRecord:
        name = str(data.get("name") or "")
        return cls(
            name=name,
            node=str(data.get("node") or (f"/dev/{name}" if name else "")),
            size=int(data["size"]),
            logical_sector=int(data.get("logical_sector") or 512),
            physical_sector=int(data.get("physical_sector") or data.get("logical_sector") or 512),
            model=_opt_str(data.get("model")),
            serial=_opt_str(data.get("serial")),
        )


@dataclass(frozen=True)
class PartitionRecord:
    number: int
    start: int  # bytes from the start of the disk
    size: int
    type: str | None = None  # GPT type GUID or MBR type byte as text
    kind: str = "primary"  # primary, extended, logical
    guid: str | None = None
    name: str | None = None
    flags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "start": self.start,
            "size": self.size,
            "type": self.type,
            "kind": self.kind,
            "guid": self.guid,
            "name": self.name,
            "flags": list(self.flags),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartitionRecord:
        return cls(
            number=int(data["number"]),
            start=int(data["start"]),
            size=int(data["size"]),
            type=_opt_str(data.get("type")),
            kind=str(data.get("kind") or "primary"),
            guid=_opt_str(data.get("guid")),
            name=_opt_str(data.get("name")),
            flags=tuple(str(f) for f in data.get("flags") or ()),
        )


@dataclass(frozen=True)
class TableRecord:
    """The partition table; `sfdisk` is `sfdisk --json`'s own view, kept whole so that a
    restore onto another size writes the same table, attributes and all."""

    type: str  # "gpt" or "dos"
    sfdisk: dict[str, Any] | None = None
    id: str | None = None
    first_lba: int | None = None
    last_lba: int | None = None
    sector: int | None = None
    partitions: tuple[PartitionRecord, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "sfdisk": self.sfdisk,
            "id": self.id,
            "first_lba": self.first_lba,
            "last_lba": self.last_lba,
            "sector": self.sector,
            "partitions": [p.to_dict() for p in self.partitions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TableRecord | None:
        if data is None:
            return None
        return cls(
            type=str(data["type"]),
            sfdisk=data.get("sfdisk"),
            id=_opt_str(data.get("id")),
            first_lba=_opt_int(data.get("first_lba")),
            last_lba=_opt_int(data.get("last_lba")),
            sector=_opt_int(data.get("sector")),
            partitions=tuple(PartitionRecord.from_dict(p) for p in data.get("partitions") or ()),
        )


@dataclass
class SaveStats:
    """What a finished save did; absent (None in the manifest) until the save completes."""

    used_bytes: int = 0
    new_bytes: int = 0
    new_chunks: int = 0
    reused_chunks: int = 0
    zero_windows: int = 0
    seconds: float | None = None
    read_errors: list[tuple[int, int]] = field(default_factory=list)  # (offset, length)
    repaired_chunks: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "used_bytes": self.used_bytes,
            "new_bytes": self.new_bytes,
            "new_chunks": self.new_chunks,
            "reused_chunks": self.reused_chunks,
            "zero_windows": self.zero_windows,
            "seconds": self.seconds,
            "read_errors": [list(r) for r in self.read_errors],
            "repaired_chunks": self.repaired_chunks,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SaveStats | None:
        if not data:
            return None
        seconds = data.get("seconds")
        return cls(
            used_bytes=int(data.get("used_bytes") or 0),
            new_bytes=int(data.get("new_bytes") or 0),
            new_chunks=int(data.get("new_chunks") or 0),
            reused_chunks=int(data.get("reused_chunks") or 0),
            zero_windows=int(data.get("zero_windows") or 0),
            seconds=None if seconds is None else float(seconds),
            read_errors=[(int(a), int(b)) for a, b in data.get("read_errors") or ()],
            repaired_chunks=int(data.get("repaired_chunks") or 0),
            warnings=[str(w) for w in data.get("warnings") or ()],
        )

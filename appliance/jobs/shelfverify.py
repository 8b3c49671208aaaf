"""verify of a Clonezilla (or Rescuezilla) image folder: every partition's stream read to its
end, partclone's description, bitmap CRC and every block checksum checked, and that the data
ends where the description says; raw `dd-img` streams decompressed to their end (and their
length compared with the partition's in the saved table). One verdict per partition.

Which files hold which partition is the folder model's (appliance/shelf/clonezilla.py); a
check reads every stream the folder holds, also those the model cannot restore (logical
volumes), so it asks the model for the streams rather than for the disks.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import (
    ApplianceError,
    Cancelled,
    CorruptData,
    ImageError,
    UnsupportedImage,
)
from appliance.progress import Phase, Progress
from appliance.shelf import clonezilla
from appliance.shelf.partclone import MAGIC, PartcloneHeader, PartcloneReader
from appliance.shelf.streams import compression_of, open_stream
from appliance.units import human_size

_STEP = 8 << 20  # progress and cancel are looked at after about this much data


@dataclass
class PartStream:
    """The file (or split pieces) holding one partition of the image."""

    part: str  # "sda1", "nvme0n1p2", "vg0-root"
    kind: str  # "partclone", "raw", "swap", "unsupported", "missing"
    fs: str = ""  # blkid's TYPE, as the file name says: "ext4", "ntfs", "vfat", ""
    path: Path | None = None  # the stream, without its split suffix
    note: str = ""  # unsupported: what it is


@dataclass
class PartVerdict:
    part: str
    kind: str
    fs: str
    ok: bool
    line: str  # one line for people
    nbytes: int = 0  # data bytes read and checked
    error: ApplianceError | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "partition": self.part,
            "kind": self.kind,
            "fs": self.fs,
            "ok": self.ok,
            "bytes": self.nbytes,
            "verdict": self.line,
        }


@dataclass
class ShelfVerifyResult:
    image: str
    parts: list[PartVerdict] = field(default_factory=list)

    @property
    def bytes_checked(self) -> int:
        return sum(v.nbytes for v in self.parts)

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.parts)

    def error(self) -> ApplianceError | None:
        """The error that sums the image up: damage before anything unreadable or missing."""
        bad = [v for v in self.parts if v.error is not None]
        if not bad:
            return None
        names = ", ".join(v.part for v in bad)
        damaged = [v for v in bad if isinstance(v.error, CorruptData)]
        if damaged:
            names = ", ".join(v.part for v in damaged)
            return CorruptData(f"Clonezilla image {self.image} is damaged (partitions {names}).")
        if any(isinstance(v.error, UnsupportedImage) for v in bad):
            return UnsupportedImage(
                f"Clonezilla image {self.image} was not checked whole: this appliance cannot "
                f"read partitions {names}."
            )
        return ImageError(f"Clonezilla image {self.image} is incomplete (partitions {names}).")


def partition_sizes(folder: Path) -> dict[str, int]:
    """Each partition's size in bytes as the saved tables say (none when they are unreadable:
    each stream is then checked without its length)."""
    try:
        image = clonezilla.load(folder)
    except ImageError:
        return {}
    return {p.name: p.size for d in image.disks for p in d.partitions}


def find_streams(folder: Path) -> list[PartStream]:
    """Every partition of the image (those `parts` lists, the swap partitions, whatever else
    the folder holds a stream of: logical volumes) and the file that holds it, in order."""
    names = {p.name for p in folder.iterdir() if p.is_file()}
    found = {
        part: PartStream(part, stream.kind, clonezilla.fstype_of(stream) or "", stream.base)
        for part, stream in clonezilla.streams_of(folder, names).items()
    }
    for part, note in clonezilla.other_streams(names).items():
        found.setdefault(part, PartStream(part, "unsupported", note=note))
    order = (folder / "parts").read_text(errors="replace").split() if "parts" in names else []
    swaps = clonezilla.swaps_of(folder, names)
    for part in order + list(swaps):
        if part in found:
            continue
        if part in swaps:  # swap is not saved: Clonezilla keeps its label and UUID to remake it
            found[part] = PartStream(part, "swap", "swap")
        elif f"{part}.aa" in names:  # partimage, which old Clonezilla used
            found[part] = PartStream(part, "unsupported", note="a partimage image")
        else:
            found[part] = PartStream(part, "missing")
    return sorted(found.values(), key=lambda s: _natural(s.part))


def _natural(name: str) -> list[tuple[int, str]]:
    """sda2 before sda10, nvme0n1p2 before nvme0n1p10."""
    return [(int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"(\d+)", name) if p]


def verify_clonezilla(
    folder: Path,
    image: str,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> ShelfVerifyResult:
    """Check every partition of the Clonezilla image in `folder`; never raises for damage (each
    partition gets its verdict; `result.error()` sums them up), only for a stop."""
    progress = progress or Progress()
    streams = find_streams(folder)
    sizes = partition_sizes(folder)
    result = ShelfVerifyResult(image)
    if not streams:
        result.parts.append(
            PartVerdict(
                "-",
                "missing",
                "",
                False,
                "the folder holds no partition images",
                error=ImageError(f"Clonezilla image {image} holds no partition images."),
            )
        )
        return result
    progress.total = _estimate(streams, sizes, image)
    progress.set_phase(Phase.VERIFY, f"checking Clonezilla image {image}")
    for stream in streams:
        what = f"partition {stream.part} of Clonezilla image {image}"
        result.parts.append(_verify_one(stream, what, sizes.get(stream.part), progress, cancel))
    progress.set_phase(Phase.DONE, f"Clonezilla image {image} checked")
    return result


def _estimate(streams: list[PartStream], sizes: dict[str, int], image: str) -> int:
    """Bytes of data the check will read: each partclone image's used blocks (from its
    description, read first), each raw image's partition size."""
    total = 0
    for stream in streams:
        if stream.kind == "raw":
            total += sizes.get(stream.part, 0)
        elif stream.kind == "partclone" and stream.path is not None:
            try:
                with open_stream(stream.path, stream.part) as data:
                    total += PartcloneReader(data, stream.part).header.used_bytes
            except ApplianceError:
                continue  # said in its verdict
    return total


def _verify_one(
    stream: PartStream,
    what: str,
    size: int | None,
    progress: Progress,
    cancel: threading.Event | None,
) -> PartVerdict:
    label = f"{stream.part} ({stream.fs})" if stream.fs else stream.part
    if stream.kind == "swap":
        return PartVerdict(
            stream.part,
            "swap",
            "swap",
            True,
            f"{stream.part} (swap): nothing saved, made anew on restore",
        )
    if stream.path is None:
        error: ApplianceError = ImageError(f"{what} has no image file in the folder.")
        if stream.kind == "unsupported":
            error = UnsupportedImage(
                f"{what} is {stream.note}, which this appliance does not read."
            )
        line = f"{label}: {str(error).rstrip('.')}"
        return PartVerdict(stream.part, stream.kind, stream.fs, False, line, error=error)
    try:
        comp = compression_of(stream.path)
        if not _is_partclone(stream.path, what):  # partclone.dd writes raw bytes
            nbytes = _read_raw(stream.path, what, size, progress, cancel)
            line = f"{label}: raw image ({comp}), read to its end: {human_size(nbytes)}"
            return PartVerdict(stream.part, "raw", stream.fs, True, line, nbytes)
        nbytes, head = _read_partclone(stream.path, what, progress, cancel)
    except Cancelled:
        raise
    except ApplianceError as exc:
        line = f"{label}: {str(exc).rstrip('.')}"
        return PartVerdict(stream.part, stream.kind, stream.fs, False, line, error=exc)
    kind = head.checksum.upper()
    if head.checksum_count > 1:
        how = f"all {head.checksum_count} of its {kind} checksums match"
    elif head.checksum_count:
        how = f"its {kind} checksum matches"
    else:
        how = "it carries no checksums, its blocks were read to the end"
    line = (
        f"{label}: partclone image ({comp}, format {head.version:04d}), intact: "
        f"{human_size(nbytes)} in {head.used_blocks} blocks, {how}"
    )
    return PartVerdict(stream.part, "partclone", stream.fs, True, line, nbytes)


def _is_partclone(path: Path, what: str) -> bool:
    """Does the stream start as a partclone image? (Clonezilla names partclone.dd's raw
    output `<part>.dd-ptcl-img...` although it is no partclone image.)"""
    with open_stream(path, what) as data:
        return data.read(len(MAGIC)) == MAGIC


def _read_partclone(
    path: Path, what: str, progress: Progress, cancel: threading.Event | None
) -> tuple[int, PartcloneHeader]:
    with open_stream(path, what) as data:
        reader = PartcloneReader(data, what)
        nbytes = since = 0
        for _offset, blocks in reader.blocks():
            nbytes += len(blocks)
            since += len(blocks)
            if since >= _STEP:
                _step(progress, cancel, since)
                since = 0
        _step(progress, cancel, since)
    return nbytes, reader.header


def _read_raw(
    path: Path, what: str, size: int | None, progress: Progress, cancel: threading.Event | None
) -> int:
    nbytes = 0
    with open_stream(path, what) as data:
        while chunk := data.read(_STEP):
            nbytes += len(chunk)
            _step(progress, cancel, len(chunk))
    if size is not None and nbytes != size:
        raise CorruptData(
            f"{what} is damaged: its raw image holds {nbytes} bytes, the partition "
            f"{size} (the saved table says so)."
        )
    return nbytes


def _step(progress: Progress, cancel: threading.Event | None, nbytes: int) -> None:
    progress.add(nbytes)
    progress.tick()
    if cancel is not None and cancel.is_set():
        raise Cancelled("Stopped by the user.")

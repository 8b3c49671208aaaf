"""verify of a Clonezilla (or Rescuezilla) image folder: every partition's stream read to its
end, partclone's description, bitmap CRC and every block checksum checked, and that the data
ends where the description says; raw `dd-img` streams decompressed to their end (and their
length compared with the partition's in the saved table). One verdict per partition.

Which files hold which partition is found here with the least the job needs (the folder model
is appliance/shelf/clonezilla.py's business; the two meet later):
    `parts`                      the partitions saved ("sda1 sda2 sda5")
    `<disk>-pt.sf`               sfdisk's dump: each partition's size
    `<part>.<fs>-ptcl-img.<comp>[.aa ...]`   a partclone image (comp: gz, zst, xz, ... uncomp)
    `<part>.dd-img[.<comp>][.aa ...]`         a raw image (compressed as its magic says)
    `<part>.<fs>-img[.aa ...]`, `<part>.<fs>.aa` ntfsclone and partimage images (old, unread)
    `swappt-<part>.info`         a swap partition (not in `parts`; nothing saved, remade on restore)
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
from appliance.shelf.partclone import MAGIC, PartcloneHeader, PartcloneReader
from appliance.shelf.streams import compression_of, open_stream
from appliance.units import human_size

_COMP = r"(?:\.(?:gz|bz2|lzo|lzma|xz|lzip|lrz|lz4|zst|uncomp))?"
_SPLIT = r"(?:\.[a-z]{2,})?"
_PTCL = re.compile(rf"^(?P<base>(?P<part>.+?)\.(?P<fs>[^.]+)-ptcl-img{_COMP}){_SPLIT}$")
_DD = re.compile(rf"^(?P<base>(?P<part>.+?)\.dd-img{_COMP}){_SPLIT}$")
_NTFSCLONE = re.compile(rf"^(?P<part>.+?)\.(?P<fs>[a-z0-9+]+)-img{_COMP}{_SPLIT}$")
_SF_LINE = re.compile(r"^/dev/(?P<name>\S+)\s*:\s*.*?\bsize=\s*(?P<size>\d+)")
_STEP = 8 << 20  # progress and cancel are looked at after about this much data


def is_clonezilla_image(folder: Path) -> bool:
    """A Clonezilla or Rescuezilla image folder: `clonezilla-img`, or `parts`/`disk` beside a
    saved partition table (`*-pt.sf`)."""
    if not folder.is_dir():
        return False
    if (folder / "clonezilla-img").is_file():
        return True
    marked = (folder / "parts").is_file() or (folder / "disk").is_file()
    return marked and any(folder.glob("*-pt.sf"))


@dataclass
class PartStream:
    """The file (or split pieces) holding one partition of the image."""

    part: str  # "sda1", "nvme0n1p2", "vg0-root"
    kind: str  # "partclone", "raw", "swap", "unsupported", "missing"
    fs: str = ""  # as the file name says: "ext4", "ntfs", "vfat", ""
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


def _listed(folder: Path, name: str) -> list[str]:
    path = folder / name
    if not path.is_file():
        return []
    return path.read_text(errors="replace").split()


def partition_sizes(folder: Path) -> dict[str, int]:
    """Each partition's size in bytes as the saved sfdisk dumps say."""
    sizes: dict[str, int] = {}
    for dump in sorted(folder.glob("*-pt.sf")):
        text = dump.read_text(errors="replace")
        sector = int(m.group(1)) if (m := re.search(r"^sector-size:\s*(\d+)", text, re.M)) else 512
        for line in text.splitlines():
            if found := _SF_LINE.match(line.strip()):
                sizes[found["name"]] = int(found["size"]) * sector
    return sizes


def find_streams(folder: Path) -> list[PartStream]:
    """Every partition of the image (those `parts` lists, the swap partitions, whatever else
    the folder holds a stream of: logical volumes) and the file that holds it, in order."""
    found: dict[str, PartStream] = {}
    for entry in sorted(p.name for p in folder.iterdir() if p.is_file()):
        if m := _PTCL.match(entry):
            found.setdefault(
                m["part"], PartStream(m["part"], "partclone", m["fs"], folder / m["base"])
            )
        elif m := _DD.match(entry):
            found.setdefault(m["part"], PartStream(m["part"], "raw", "", folder / m["base"]))
        elif m := _NTFSCLONE.match(entry):
            note = (
                "an ntfsclone image"
                if m["fs"] == "ntfs"
                else f"an image by another program ({m['fs']}-img)"
            )
            found.setdefault(m["part"], PartStream(m["part"], "unsupported", m["fs"], note=note))
    order = _listed(folder, "parts")
    swaps = [p.name[len("swappt-") : -len(".info")] for p in folder.glob("swappt-*.info")]
    for part in order + swaps:
        if part in found:
            continue
        if part in swaps:  # swap is not saved: Clonezilla keeps its label and UUID to remake it
            found[part] = PartStream(part, "swap", "swap")
        elif (folder / f"{part}.aa").is_file():  # partimage, which old Clonezilla used
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
        if stream.kind == "raw" or not _is_partclone(stream.path, what):
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

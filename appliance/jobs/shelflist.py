"""The shelf part of `images`: other tools' images found in a folder (Clonezilla and
Rescuezilla image folders, Windows system images, disk image files), summarised for the
listing whether or not the folder is also one of our repositories."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError
from appliance.jobs.catalog import ImageSummary
from appliance.repo.records import DiskRecord
from appliance.shelf import imagefile, vmdisk
from appliance.shelf.clonezilla import ClonezillaImage, find_images, load
from appliance.shelf.winbackup import WindowsBackup, find_backups


@dataclass
class ShelfImage:
    """One image of another tool found in the folder; `problem` when it cannot be read or
    cannot be restored here (one sentence)."""

    path: Path
    image: ClonezillaImage | None
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def restorable(self) -> bool:
        return self.image is not None and self.problem is None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "path": str(self.path),
            "format": "clonezilla",
            "kind": self.image.kind if self.image else "Clonezilla image",
            "restorable": self.restorable,
            "problem": self.problem,
        }
        if self.image is None:
            return out
        img = self.image
        out.update(
            {
                "date": img.date,
                "date_from": img.date_from,
                "compressor": ", ".join(img.compressors) or None,
                "compressors": img.compressors,
                "stored_bytes": img.stored_bytes,
                "size": sum(d.size or 0 for d in img.disks),
                "disks": [
                    {
                        "name": d.name,
                        "size": d.size,
                        "table": d.label,
                        "logical_sector": d.sector_size,
                        "partitions": [
                            {
                                "name": p.name,
                                "number": p.number,
                                "start": p.start,
                                "size": p.size,
                                "fstype": p.fstype,
                                "method": p.method,
                                "files": [f.name for f in p.stream.files] if p.stream else [],
                            }
                            for p in d.partitions
                        ],
                    }
                    for d in img.disks
                ],
            }
        )
        return out


def shelf_summary(item: ShelfImage) -> ImageSummary:
    """A Clonezilla image in the terms the interface's image list shows ours in."""
    img = item.image
    if img is None:
        return ImageSummary(
            item.name, "", None, False, None, 0, 0, problem=item.problem, kind="Clonezilla image"
        )
    first = img.disks[0] if img.disks else None
    disk = (
        DiskRecord(first.name, f"/dev/{first.name}", first.size or 0, first.sector_size)
        if first
        else None
    )
    return ImageSummary(  # its data: what the folder stores (the used bytes are not listed)
        item.name,
        img.date,
        img.date,
        item.restorable,
        disk,
        img.stored_bytes,
        img.stored_bytes,
        problem=item.problem,
        proof="unproven",
        kind=img.kind,
    )


def windows_summaries(backup: WindowsBackup) -> list[ImageSummary]:
    """A Windows system image in the terms the interface's image list shows ours in: one
    row per disk, named as restore takes it ("NAME", or "NAME disk N" for several disks)."""
    several = len(backup.disks) > 1
    out: list[ImageSummary] = []
    for number, disk in enumerate(backup.disks or (None,), 1):
        name = f"{backup.name} disk {number}" if several else backup.name
        record = (
            DiskRecord(disk.file.stem, str(disk.file), disk.size, model=f"{disk.format} file")
            if disk
            else None
        )
        out.append(
            ImageSummary(  # its data: what the disk file stores
                name,
                backup.date,
                backup.date,
                backup.problem is None and disk is not None,
                record,
                disk.allocated if disk else 0,
                disk.allocated if disk else 0,
                problem=backup.problem,
                kind=backup.kind,
            )
        )
    return out


def list_windows(folder: str) -> list[ImageSummary]:
    """The Windows system images under `folder` (see shelf.winbackup), a row per disk."""
    path = Path(folder)
    backups = find_backups(path) if path.is_dir() else []
    return [row for backup in backups for row in windows_summaries(backup)]


def list_shelf(folder: str) -> list[ShelfImage]:
    """The Clonezilla image folders in `folder` (or `folder` itself when it is one)."""
    out: list[ShelfImage] = []
    for path in find_images(Path(folder)):
        try:
            image = load(path)
        except (ApplianceError, OSError, ValueError) as exc:
            problem = str(exc) if isinstance(exc, ApplianceError) else f"{path} cannot be read."
            out.append(ShelfImage(path, None, problem))
            continue
        out.append(ShelfImage(path, image, image.unsupported))
    return out


def list_disk_files(folder: str) -> list[ImageSummary]:
    """The disk image files directly in `folder` (raw .img/.iso/.bin, VM disks, and their
    compressed forms), a row each, named by the file's name. A restore puts the disk a file
    holds onto a target with the fit rules, which needs reads at any offset: a compressed
    file is listed with the sentence that says to write it byte for byte instead."""
    path = Path(folder)
    suffixes = {*imagefile.RAW_SUFFIXES, *imagefile.COMPRESSED_SUFFIXES, ".zip", *vmdisk.FORMATS}
    try:
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes and p.is_file())
    except OSError:
        return []
    out: list[ImageSummary] = []
    for file in files:
        when = datetime.fromtimestamp(file.stat().st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        problem = None
        size = file.stat().st_size
        kind = "disk image file"
        try:
            image = imagefile.probe(file)
            size = image.size or size
            kind = image.describe()
            if not image.seekable and image.vm is None:
                problem = (
                    f"{file.name} is a {kind}: a restore reads it at any offset; write it byte "
                    "for byte with Write file instead."
                )
        except ApplianceError as exc:
            problem = str(exc)
        record = DiskRecord(file.stem, str(file), size, model=kind)
        stored = file.stat().st_size
        out.append(
            ImageSummary(
                file.name,
                when,
                when,
                problem is None,
                record,
                stored,
                stored,
                problem=problem,
                kind=kind,
            )
        )
    return out

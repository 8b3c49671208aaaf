"""images and gc on the command line."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from appliance.cli.output import print_json
from appliance.errors import RepositoryError
from appliance.jobs.catalog import ImageSummary, gc, list_images
from appliance.jobs.shelflist import ShelfImage, list_shelf
from appliance.shelf.winbackup import WindowsBackup, find_backups
from appliance.units import human_size


def run_images(args: argparse.Namespace) -> int:
    shelf = list_shelf(args.repo)
    backups = find_backups(Path(args.repo)) if Path(args.repo).is_dir() else []
    try:
        images = list_images(args.repo)
    except RepositoryError:
        if not shelf and not backups:
            raise
        images = []  # a plain folder of other tools' images, not one of our repositories
    if args.json:
        print_json(
            {
                "command": "images",
                "images": [i.to_json() for i in images],
                "shelf": [s.to_json() for s in shelf],
                "windows_backups": [b.to_json() for b in backups],
            }
        )
        return 0
    if backups:
        print_backups(backups)
        if not images and not shelf:
            return 0
        print()
    if shelf:
        print_shelf(shelf)
        if not images:
            return 0
        print()
    if not images:
        print(f"The repository {args.repo} holds no images.")
        return 0
    print_images(images)
    return 0


def print_images(images: list[ImageSummary]) -> None:
    print(f"{'NAME':17} {'SAVED':16}  {'SIZE':>8}  {'USED':>8}  {'STORED':>8}  STATE")
    for img in images:
        disk = img.disk
        source = f"{disk.model or '?'} {disk.serial or ''}".strip() if disk else "?"
        state = (
            img.proof
            if img.complete and not img.problem
            else ("DAMAGED" if img.problem else "INCOMPLETE")
        )
        name = img.name
        if len(name) > 17:  # a long name gets its own line; the figures stay in columns
            print(name)
            name = ""
        saved = (img.finished or img.created)[:16].replace("T", " ")
        sizes = [
            human_size(n) if disk else "-"
            for n in (disk.size if disk else 0, img.used_bytes, img.stored_bytes)
        ]
        print(f"{name:17} {saved or '-':16}  {sizes[0]:>8}  {sizes[1]:>8}  {sizes[2]:>8}  {state}")
        notes = [f"from {source}"] if disk else []
        if img.problem:
            notes.append(img.problem)
        elif not img.complete:
            notes.append("the save did not finish: not restorable (resume it with --resume)")
        for note in notes:
            print(
                "\n".join(
                    textwrap.wrap(note, 80, initial_indent=" " * 18, subsequent_indent=" " * 20)
                )
            )


def run_gc(args: argparse.Namespace) -> int:
    result = gc(args.repo)
    if args.json:
        print_json(
            {
                "command": "gc",
                "removed_chunks": result.removed_chunks,
                "removed_bytes": result.removed_bytes,
                "kept_chunks": result.kept_chunks,
                "skipped": result.skipped_json(),
            }
        )
        return 0
    print(
        f"Removed {result.removed_chunks} unused chunks ({human_size(result.removed_bytes)});"
        f" {result.kept_chunks} chunks are in use."
    )
    for name, reason in result.skipped:
        print(f"Image {name} is damaged: {reason}.")
    return 0


def print_backups(backups: list[WindowsBackup]) -> None:
    """Windows system images: the computer and date, each disk's size and partitions."""
    print(f"{'WINDOWS SYSTEM IMAGE':36}  {'DISKS':>5}  {'SIZE':>8}  STATE")
    for backup in backups:
        size = sum(d.size for d in backup.disks)
        state = "DAMAGED" if backup.problem else "restorable"
        print(
            f"{backup.name:36}  {len(backup.disks):>5}  "
            f"{human_size(size) if size else '-':>8}  {state}"
        )
        notes = [backup.problem] if backup.problem else []
        several = len(backup.disks) > 1  # restore names one with --disk N
        notes += [
            f"{f'disk {n}: ' if several else ''}{d.file.name} ({d.format}, "
            f"{d.table or 'no table'}): "
            + ", ".join(f"{p.number} {p.fstype or p.type}" for p in d.partitions)
            for n, d in enumerate(backup.disks, 1)
        ]
        for note in notes:
            print(
                "\n".join(
                    textwrap.wrap(note, 80, initial_indent=" " * 18, subsequent_indent=" " * 20)
                )
            )


def print_shelf(shelf: list[ShelfImage]) -> None:
    """Clonezilla image folders: name, date, source disk and size, stored size, kind and
    compressor, then a line of partitions with their filesystems."""
    print(f"{'NAME':17} {'SAVED':16}  {'SIZE':>8}  {'STORED':>8}  KIND")
    for item in shelf:
        name = item.name
        if len(name) > 17:
            print(name)
            name = ""
        img = item.image
        if img is None:
            print(f"{name:17} {'-':16}  {'-':>8}  {'-':>8}  Clonezilla image, DAMAGED")
            notes = [item.problem or ""]
        else:
            size = sum(d.size or 0 for d in img.disks)
            kind = ", ".join([img.kind, *img.compressors])
            saved = img.date[:16].replace("T", " ")
            print(
                f"{name:17} {saved:16}  {human_size(size) if size else '-':>8}  "
                f"{human_size(img.stored_bytes):>8}  {kind}"
            )
            notes = [
                f"from {d.name} ({d.label}): "
                + ", ".join(f"{p.name} {p.fstype or p.method}" for p in d.partitions)
                for d in img.disks
            ]
            if item.problem:
                notes.append(item.problem)
        for note in notes:
            print(
                "\n".join(
                    textwrap.wrap(note, 80, initial_indent=" " * 18, subsequent_indent=" " * 20)
                )
            )

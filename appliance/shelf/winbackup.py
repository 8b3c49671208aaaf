"""Windows "Backup and Restore" system images: the folders Windows' own system image backup
(and `wbadmin`) writes, found in a folder and described without Windows.

    WindowsImageBackup/
      <computer name>/
        MediaId
        Catalog/GlobalCatalog, Catalog/BackupGlobalCatalog
        Backup <year>-<month>-<day> <hhmmss>/
          <id>.vhdx ...      one VM disk per disk of the machine (.vhd before Windows 8)
          *.xml              the backup's settings (BackupSpecs.xml, components, writers)

Each disk file holds the whole disk's layout (its partition table) and the data of the
volumes that were backed up; it is read through shelf.vmdisk's raw view, so nothing is
converted: `sfdisk --json` reads its table and `blkid` each partition's filesystem. The
folder's own files are checked for presence only (the XML is Windows' business); what a
restore needs is in the disk files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.disk.fsprobe import fsinfo_from_export, parse_export
from appliance.disk.parttypes import type_name
from appliance.errors import ApplianceError, UsageError
from appliance.shelf.vmdisk import RawView, VmDisk, inspect
from appliance.tools import run

TOP = "WindowsImageBackup"
BACKUP_FOLDER = re.compile(r"^Backup (\d{4}-\d{2}-\d{2} \d{6})$")
DISK_SUFFIXES = {".vhdx": "vhdx", ".vhd": "vpc"}


@dataclass(frozen=True)
class BackupPartition:
    number: int
    start: int  # bytes
    size: int
    type: str  # as people read it: "EFI System", "Microsoft reserved", ...
    fstype: str | None  # blkid's TYPE of what the backup holds there (None: not saved, or none)
    label: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "start": self.start,
            "size": self.size,
            "type": self.type,
            "fstype": self.fstype,
            "label": self.label,
        }


@dataclass(frozen=True)
class BackupDisk:
    file: Path
    format: str  # "VHDX" or "VHD"
    size: int  # bytes of the disk
    allocated: int  # bytes the file takes
    table: str | None  # "gpt", "dos", None when the file holds none
    partitions: tuple[BackupPartition, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file.name,
            "format": self.format,
            "size": self.size,
            "allocated": self.allocated,
            "table": self.table,
            "partitions": [p.to_json() for p in self.partitions],
        }


@dataclass(frozen=True)
class WindowsBackup:
    folder: Path  # the "Backup <date>" folder
    computer: str
    date: str  # ISO 8601, local time as Windows named the folder
    disks: tuple[BackupDisk, ...] = ()
    problem: str | None = None  # one sentence: why it cannot be restored
    files: tuple[str, ...] = field(default_factory=tuple)  # the folder's other files

    @property
    def name(self) -> str:
        return f"{self.computer} {self.date.replace('T', ' ')}"

    @property
    def kind(self) -> str:
        return "Windows system image"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "folder": str(self.folder),
            "computer": self.computer,
            "date": self.date,
            "restorable": self.problem is None,
            "problem": self.problem,
            "disks": [{"number": n, **d.to_json()} for n, d in enumerate(self.disks, 1)],
        }


def _date(folder_name: str) -> str | None:
    match = BACKUP_FOLDER.match(folder_name)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), "%Y-%m-%d %H%M%S").isoformat()
    except ValueError:
        return None


def backup_folders(folder: Path) -> list[Path]:
    """Every "Backup <date>" folder of a system image under `folder`: `folder` may hold
    WindowsImageBackup, be it, be one computer's folder in it, or be one backup."""
    folder = Path(folder)
    if _date(folder.name) is not None and folder.parent.parent.name == TOP:
        return [folder]
    if folder.parent.name == TOP:
        computers = [folder]
    elif folder.name == TOP:
        computers = [p for p in folder.iterdir() if p.is_dir()]
    elif (folder / TOP).is_dir():
        computers = [p for p in (folder / TOP).iterdir() if p.is_dir()]
    else:
        return []
    return sorted(
        backup
        for computer in computers
        for backup in computer.iterdir()
        if backup.is_dir() and _date(backup.name) is not None
    )


def read_partitions(view: RawView) -> tuple[str | None, tuple[BackupPartition, ...]]:
    """The disk's table and partitions, read from its raw view with sfdisk and blkid."""
    proc = run(["sfdisk", "--json", view.path], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None, ()
    table = json.loads(proc.stdout)["partitiontable"]
    label = str(table.get("label"))
    sector = int(table.get("sectorsize", 512))
    parts: list[BackupPartition] = []
    for entry in table.get("partitions", []):
        number = int(re.sub(r"^.*?(\d+)$", r"\1", entry["node"]))
        start, size = int(entry["start"]) * sector, int(entry["size"]) * sector
        probe = run(
            ["blkid", "-p", "-o", "export", "--offset", str(start), "--size", str(size), view.path],
            check=False,
        )
        info = fsinfo_from_export(parse_export(probe.stdout)) if probe.returncode == 0 else None
        parts.append(
            BackupPartition(
                number,
                start,
                size,
                type_name(label, str(entry.get("type", "")).lower()),
                info.type if info else None,
                info.label if info else None,
            )
        )
    return label, tuple(parts)


def read_disk(file: Path) -> BackupDisk:
    vm: VmDisk = inspect(file, DISK_SUFFIXES[file.suffix.lower()])
    with RawView(file, disk=vm) as view:
        table, partitions = read_partitions(view)
    return BackupDisk(file, vm.kind, vm.size, vm.allocated, table, partitions)


def read_backup(folder: Path) -> WindowsBackup:
    """One "Backup <date>" folder; a damaged or incomplete one has its `problem` said."""
    computer = folder.parent.name
    date = _date(folder.name) or ""
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    disk_files = sorted(p for p in folder.iterdir() if p.suffix.lower() in DISK_SUFFIXES)
    if not disk_files:
        return WindowsBackup(
            folder, computer, date, problem=f"{folder} holds no disk file (.vhdx or .vhd)."
        )
    disks: list[BackupDisk] = []
    for file in disk_files:
        try:
            disks.append(read_disk(file))
        except ApplianceError as exc:
            return WindowsBackup(folder, computer, date, tuple(disks), str(exc), tuple(files))
    problem = None
    if not any(name.lower().endswith(".xml") for name in files):
        problem = f"{folder} has no backup settings (.xml files): it may be incomplete."
    return WindowsBackup(folder, computer, date, tuple(disks), problem, tuple(files))


def backup_name(backup: Path) -> str:
    """What `images` names the "Backup <date>" folder `backup`: "<computer> <date time>"."""
    date = _date(backup.name) or ""
    return f"{backup.parent.name} {date.replace('T', ' ')}"


def find_backup(folder: Path, name: str) -> WindowsBackup | None:
    """The backup under `folder` that `images` names NAME (or whose computer is NAME, when that
    computer has one backup there), read; None when none is named so. Several backups of the
    computer NAME: one sentence that names them."""
    found = backup_folders(folder) if Path(folder).is_dir() else []
    exact = [path for path in found if backup_name(path) == name]
    if exact:
        return read_backup(exact[0])
    same = [path for path in found if path.parent.name == name]
    if len(same) > 1:
        names = ", ".join(f'"{backup_name(path)}"' for path in same)
        raise UsageError(
            f"The computer {name} has {len(same)} Windows system images: {names}; name one of them."
        )
    return read_backup(same[0]) if same else None


def find_backups(folder: Path) -> list[WindowsBackup]:
    """Every Windows system image backup under `folder` (see backup_folders)."""
    return [read_backup(path) for path in backup_folders(folder)]

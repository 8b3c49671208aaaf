"""A Windows "Backup and Restore" system image folder, built on Linux for tests: a GPT disk
laid out as Windows lays out a UEFI system disk (FAT32 ESP, Microsoft reserved partition,
NTFS), turned into a VHDX by qemu-img and put where Windows puts it:

    ROOT/WindowsImageBackup/<PC>/Backup 2026-11-30 101500/<id>.vhdx + XML files
    ROOT/WindowsImageBackup/<PC>/Catalog/GlobalCatalog, BackupGlobalCatalog; MediaId

The XML files carry the names Windows gives them and are UTF-16 with a byte order mark, as
Windows writes its XML; their contents are placeholders (the appliance only checks they are
there). Nothing here imports the appliance package.
"""

from __future__ import annotations

import random
import tempfile
from contextlib import suppress
from pathlib import Path

from kit.diskbuild import (
    ESP_TYPE,
    MS_BASIC_DATA_TYPE,
    LoopAttacher,
    MiB,
    _populate_fat,
    payload,
    sparse_file,
)
from kit.diskcompare import flush_all, mounted, partition_nodes, run, syncfs

MSR_TYPE = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
WINDOWS_DISK_SIZE = 192 * MiB
DISK_ID = "{3f1d6d2e-8a4b-4c55-9e1f-0b6f1c2d3e4f}"
XML_FILES = (
    "BackupSpecs.xml",
    f"{DISK_ID}_AdditionalFilesc3b9f3c7-5e52-4d5e-8b20-19adc95a34c7.xml",
    f"{DISK_ID}_Components.xml",
    f"{DISK_ID}_RegistryExcludes.xml",
)


#: files with the names Windows users give them (accents, Cyrillic, CJK, a check mark)
UNICODE_FILES = {
    "Users/Zoë/Documents/Résumé 2026.txt": "Zoë's résumé\n",
    "Users/Zoë/Документы/отчёт.txt": "квартальный отчёт\n",
    "Users/Zoë/写真/日本語のメモ.txt": "日本語のテキスト\n",
    "Program Files/Ünïcødé ✓/настройки.ini": "[main]\nok=1\n",
}
NOISE = 20 * MiB  # incompressible data on the NTFS: the least a target must hold


def build_windows_disk(loops: LoopAttacher, path: Path, *, files: bool = False) -> str:
    """ESP (FAT32, 64 MiB), MSR (16 MiB, no filesystem), NTFS "Windows" (the rest);
    `files`: the ESP gets kit.diskbuild's FAT files, the NTFS payload() files, files with
    Unicode names (UNICODE_FILES) and NOISE bytes of random data (Windows/noise.bin)."""
    sparse_file(path.parent, path.name, WINDOWS_DISK_SIZE)
    node = loops.attach(path)
    script = (
        "label: gpt\n"
        f'start=2048, size=64MiB, type={ESP_TYPE}, name="EFI system partition"\n'
        f'size=16MiB, type={MSR_TYPE}, name="Microsoft reserved partition"\n'
        f'type={MS_BASIC_DATA_TYPE}, name="Basic data partition"\n'
    )
    run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", node, input=script)
    parts = partition_nodes(node)
    run("mkfs.fat", "-F", "32", "-n", "SYSTEM", parts[1])
    run("mkfs.ntfs", "-Q", "-F", "-L", "Windows", parts[3])
    if files:
        _populate_fat(parts[1], 5)
        _fill_ntfs(loops, parts[3])
    flush_all(node)
    return node


def windows_files() -> dict[str, bytes]:
    """Every regular file build_windows_disk(files=True) puts on the NTFS, by path."""
    out = dict(payload(5, "windows").keep)
    out.update({name: text.encode() for name, text in UNICODE_FILES.items()})
    out["Windows/noise.bin"] = random.Random(5).randbytes(NOISE)
    return out


def _fill_ntfs(loops: LoopAttacher, part: str) -> None:
    root = getattr(loops, "mount_root", None)
    mp = Path(tempfile.mkdtemp(prefix="build-windows-", dir=root))
    try:
        with mounted(part, "ntfs", readonly=False, mountpoint=mp) as where:
            for name, data in windows_files().items():
                (where / name).parent.mkdir(parents=True, exist_ok=True)
                (where / name).write_bytes(data)
            syncfs(where)
    finally:
        with suppress(OSError):
            mp.rmdir()


def make_backup_folder(root: Path, computer: str, stamp: str, disks: list[Path]) -> Path:
    """The folder layout around VHDX files (moved in); the "Backup <stamp>" folder."""
    machine = root / "WindowsImageBackup" / computer
    backup = machine / f"Backup {stamp}"
    backup.mkdir(parents=True)
    (machine / "Catalog").mkdir()
    for name in ("GlobalCatalog", "BackupGlobalCatalog"):
        (machine / "Catalog" / name).write_bytes(b"\0" * 512)
    (machine / "MediaId").write_bytes(b"\0" * 16)
    for number, disk in enumerate(disks):
        disk.rename(backup / f"{{{number:08x}-0000-4000-8000-000000000000}}.vhdx")
    for name in XML_FILES:
        text = f'<?xml version="1.0" encoding="UTF-16"?>\n<{name.split(".")[0][-12:]} />\n'
        (backup / name).write_bytes(text.encode("utf-16"))
    return backup

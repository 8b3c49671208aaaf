"""Partition types as people read them: GPT type GUIDs and MBR type bytes by name."""

from __future__ import annotations

GPT_TYPES = {
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI System",
    "21686148-6449-6e6f-744e-656564454649": "BIOS boot",
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap",
    "e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM",
    "a19d880f-05fc-4d3b-a006-743f0f84911e": "Linux RAID",
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "Linux root (x86-64)",
    "933ac7e1-2eb4-4f13-b844-0e14e2aef915": "Linux home",
    "bc13c2ff-59e6-4262-a352-b275fd6f7172": "Linux extended boot",
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Microsoft basic data",
    "e3c9e316-0b5c-4db8-817d-f92df00215ae": "Microsoft reserved",
    "de94bba4-06d1-4d40-a16a-bfd50179d6ac": "Windows recovery",
    "48465300-0000-11aa-aa11-00306543ecac": "Apple HFS+",
    "7c3457ef-0000-11aa-aa11-00306543ecac": "Apple APFS",
}
MBR_TYPES = {
    "01": "FAT12",
    "05": "Extended",
    "06": "FAT16",
    "07": "NTFS/exFAT",
    "0b": "FAT32",
    "0c": "FAT32 (LBA)",
    "0e": "FAT16 (LBA)",
    "0f": "Extended (LBA)",
    "17": "Hidden NTFS",
    "27": "Windows recovery",
    "82": "Linux swap",
    "83": "Linux",
    "85": "Linux extended",
    "8e": "Linux LVM",
    "ee": "GPT protective",
    "ef": "EFI System",
    "fd": "Linux RAID",
}


def type_name(table: str | None, part_type: str) -> str:
    """A partition type as a person reads it; the raw GUID or byte when it is not known."""
    names = GPT_TYPES if table == "gpt" else MBR_TYPES
    return names.get(part_type, part_type)

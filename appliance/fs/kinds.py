"""What each filesystem can do, in one table: the engine asks here and nowhere else.

A kind is named by blkid's TYPE. For each: the partclone program that maps its used blocks
(None: copied whole), whether it can grow or shrink and whether growing needs it mounted,
whether a repository can live on it, how to mount it read-only without writing a byte (to
compare its files), and whether it is an encrypted container. Each checker and its flags
stay in appliance/fs/check.py; the tools that grow and shrink, in appliance/fs/resize.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FsKind:
    name: str  # blkid TYPE: ext4, xfs, btrfs, ntfs, vfat, exfat, crypto_LUKS, ...
    family: str  # the tools that handle it: "ext", "xfs", "btrfs", "ntfs", "fat", ...
    partclone: str | None = None  # the partclone program that maps it (None: copied whole)
    grow: bool = False  # its own tool grows it to fill a larger partition
    shrink: bool = False  # its own tool shrinks it (on a copy-on-write view)
    grow_mounted: bool = False  # growing works only while it is mounted (xfs, btrfs)
    repository: bool = False  # a repository can live on it (the appliance mounts it)
    fuse: bool = False  # mounted with ntfs-3g rather than the kernel
    read_only: str | None = None  # mount options of a read-only mount that writes nothing
    driver: str | None = None  # the kernel driver to name to mount (default: the name)
    encrypted: str | None = None  # the encryption's name for people: "LUKS", "BitLocker"

    @property
    def comparable(self) -> bool:
        """Its files can be compared: it mounts read-only without writing."""
        return self.read_only is not None


_EXT_READ_ONLY = "ro,noload"  # noload: the journal is not replayed

KINDS: dict[str, FsKind] = {
    kind.name: kind
    for kind in (
        FsKind(
            "ext2",
            "ext",
            "partclone.extfs",
            grow=True,
            shrink=True,
            repository=True,
            read_only=_EXT_READ_ONLY,
            driver="ext4",
        ),
        FsKind(
            "ext3",
            "ext",
            "partclone.extfs",
            grow=True,
            shrink=True,
            repository=True,
            read_only=_EXT_READ_ONLY,
            driver="ext4",
        ),
        FsKind(
            "ext4",
            "ext",
            "partclone.extfs",
            grow=True,
            shrink=True,
            repository=True,
            read_only=_EXT_READ_ONLY,
        ),
        FsKind(
            "xfs",
            "xfs",
            "partclone.xfs",
            grow=True,
            grow_mounted=True,
            repository=True,
            read_only="ro,norecovery,nouuid",
        ),
        FsKind(
            "btrfs",
            "btrfs",
            "partclone.btrfs",
            grow=True,
            grow_mounted=True,
            repository=True,
            read_only="ro,rescue=nologreplay",
        ),
        FsKind(
            "ntfs",
            "ntfs",
            "partclone.ntfs",
            grow=True,
            shrink=True,
            repository=True,
            fuse=True,
            read_only="ro",
        ),
        # no vfat or exfat kernel module on the live system's kernel: no read-only compare
        FsKind("vfat", "fat", "partclone.fat", repository=True),
        FsKind("exfat", "exfat", "partclone.exfat", repository=True),
        FsKind("swap", "swap"),
        FsKind("crypto_LUKS", "luks", encrypted="LUKS"),
        FsKind("BitLocker", "bitlocker", encrypted="BitLocker"),
    )
}


def kind_of(fstype: str | None) -> FsKind | None:
    """The kind named by blkid TYPE `fstype`; None for an unknown or missing type."""
    return KINDS.get(fstype or "")


def family_of(fstype: str | None) -> str | None:
    """The tools' family of `fstype` ("ext" for ext2, ext3 and ext4); None when unknown."""
    kind = KINDS.get(fstype or "")
    return kind.family if kind is not None else None


def names(test: str) -> frozenset[str]:
    """The kinds whose boolean field (or field that is set) `test` is true."""
    return frozenset(name for name, kind in KINDS.items() if getattr(kind, test))


MAPPABLE = names("partclone")
GROWABLE = names("grow")
SHRINKABLE = names("shrink")
REPOSITORY = names("repository")
COMPARABLE = names("comparable")
ENCRYPTED = names("encrypted")

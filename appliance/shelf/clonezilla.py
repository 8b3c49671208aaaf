"""Clonezilla (and Rescuezilla) image folders: what one holds, read from its files alone.

A folder saved by `ocs-sr savedisk NAME sda` holds (facts from Clonezilla's ocs-functions):

- `disk` (the saved disks, space-separated: "sda") and `parts` (the saved partitions);
- `sda-pt.sf` (`sfdisk --dump`), `sda-pt.parted` (`parted -s /dev/sda unit s print`: the
  disk's size in sectors), `sda-chs.sf`;
- the boot area: `sda-mbr` (LBA 0), `sda-hidden-data-after-mbr` (LBA 1 up to the first
  partition, MBR disks only), `sda-gpt-1st` / `sda-gpt-2nd` (the primary and backup GPT
  sectors), `sda2-ebr` (the first sector of an extended partition);
- one stream per partition: `sda1.ext4-ptcl-img.zst` (a partclone image; `.gz`, `.bz2`, `.xz`,
  `.lz4`, `.lzo`, `.lzma`, `.lzip`, `.lrz`, `.zst` or `.uncomp`), split by `-i SIZE` into
  `.aa`, `.ab`, ...; `sda6.dd-ptcl-img.gz` is raw bytes (partclone.dd, an unformatted or
  unknown partition); `sda6.dd-img` is the same from older Clonezilla (plain dd, gzip);
- `swappt-sda4.info` (UUID="..." LABEL="..." of a swap partition, which is recreated, never
  saved), `dev-fs.list`, `blkid.list`, `clonezilla-img` (its log; first line says when),
  `Info-*.txt`; Rescuezilla adds `rescuezilla.*` files to the same layout.

Parts this appliance does not restore (LVM, md RAID, LUKS, an ecryptfs-encrypted image,
ntfsclone streams of old Clonezilla) make `unsupported` one sentence; the
folder is still listed.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import ImageError, UnsupportedImage

#: a file name suffix of a partition stream -> the compressor's name (as streams.detect says)
COMPRESSORS = {
    "gz": "gzip",
    "zst": "zstd",
    "bz2": "bzip2",
    "xz": "xz",
    "lz4": "lz4",
    "lzo": "lzop",
    "lzma": "lzma",
    "lzip": "lzip",
    "lrz": "lrzip",
    "uncomp": "none",
}
#: partclone's name in a file name -> blkid's TYPE (None: raw bytes, no filesystem)
_FS_NAMES = {"fat12": "vfat", "fat16": "vfat", "fat32": "vfat", "fat": "vfat", "dd": None}

_STREAM = re.compile(r"^(?P<part>.+?)\.(?P<fs>[A-Za-z0-9_+]+)-ptcl-img\.(?P<comp>[a-z0-9]+)$")
_LEGACY_DD = re.compile(r"^(?P<part>.+?)\.dd-img$")
#: a stream's file: its own name, or that name and a split suffix (.aa, .ab, ...)
_PIECE_OF = re.compile(r"^(?P<base>.+?(?:-ptcl-img\.[a-z0-9]+|\.dd-img))(?:\.[a-z]{2,})?$")
_NTFSCLONE = re.compile(r"^(?P<part>.+?)\.ntfs-img(?:\.|$)")
#: a stream of another program that old Clonezilla used: `<part>.<fs>-img[.<comp>][.aa]`
_OTHER_IMG = re.compile(r"^(?P<part>.+?)\.(?P<fs>[a-z0-9+]+)-img(?:\.[a-z0-9]+)*$")
_SAVED_AT = re.compile(r"saved by Clonezilla at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?: ([A-Z]+))?")

#: files that mean a part of the saved machine this appliance cannot restore
_UNSUPPORTED = (
    ("ecryptfs.info", "it is encrypted with ecryptfs (decrypt it with Clonezilla first)"),
    ("lvm_vg_dev.list", "it holds LVM volume groups"),
    ("luks-dev.list", "it holds LUKS-encrypted partitions"),
    ("mdadm.conf", "it holds md RAID arrays"),
    ("dmraid.table", "it holds a firmware (dmraid) RAID set"),
)


@dataclass(frozen=True)
class Stream:
    """The files holding one partition's saved bytes, split pieces in order."""

    base: Path  # the name without a split suffix (streams.open_stream takes it)
    files: tuple[Path, ...]
    kind: str  # "partclone" (a partclone image) or "raw" (the partition's bytes)
    compressor: str  # from the file name: "gzip", "zstd", ... ("none": uncompressed)

    @property
    def size(self) -> int:
        return sum(f.stat().st_size for f in self.files)


@dataclass(frozen=True)
class Partition:
    name: str  # Clonezilla's name for it, as in the file names: "sda1", "nvme0n1p2"
    number: int
    start: int  # bytes from the disk's start
    size: int  # bytes
    type: str  # the table's type: "83", "5", a GPT type GUID
    bootable: bool
    fstype: str | None  # blkid's TYPE ("ext4", "vfat", "swap"); None: unformatted or raw
    stream: Stream | None  # None: not saved (swap, extended, or missing)
    swap_uuid: str | None = None
    swap_label: str | None = None
    extended: bool = False

    @property
    def method(self) -> str:
        """How a restore makes it: "partclone", "raw", "swap", "extended" or "none"."""
        if self.stream is not None:
            return self.stream.kind
        if self.extended:
            return "extended"
        return "swap" if self.fstype == "swap" else "none"

    def describe(self) -> str:
        what = self.fstype or ("raw" if self.method == "raw" else "no filesystem")
        return f"{self.name} ({what})"


KEPT_FIELDS = ("node", "type", "uuid", "name", "attrs")  # of a dump's partition line


@dataclass(frozen=True)
class Disk:
    name: str  # "sda"
    label: str  # "gpt" or "dos"
    sector_size: int
    size: int | None  # bytes, from pt.parted (None when it does not say)
    table: Path  # the sfdisk dump
    header: dict[str, str]  # the dump's header lines: label-id, first-lba, last-lba, ...
    partitions: tuple[Partition, ...]
    boot: dict[str, Path]  # "mbr", "hidden-data-after-mbr", "gpt-1st", "gpt-2nd", "ebr"

    @property
    def used_end(self) -> int:
        """The byte where the last partition ends."""
        return max((p.start + p.size for p in self.partitions), default=0)

    def sfdisk_json(self, image: str) -> dict[str, Any]:
        """The saved dump as `sfdisk --json` names its fields (what plan/table.py writes);
        last-lba is left out, as Clonezilla's restore does: sfdisk puts the GPT backup at the
        target's own end."""
        _, entries = parse_sfdisk_dump(self.table.read_text(errors="replace"), image)
        out: dict[str, Any] = {
            "label": self.label,
            "id": self.header.get("label-id", ""),
            "sectorsize": self.sector_size,
            "partitions": [
                {
                    **{k: v for k, v in e.items() if k in KEPT_FIELDS},
                    "start": int(e.get("start", "0")),
                    "size": int(e.get("size", "0")),
                    "bootable": "bootable" in e,
                }
                for e in entries
            ],
        }
        if "first-lba" in self.header:
            out["firstlba"] = int(self.header["first-lba"])
        return out


@dataclass(frozen=True)
class ClonezillaImage:
    path: Path
    name: str
    date: str  # ISO 8601, UTC when Clonezilla said so
    date_from: str  # "clonezilla-img" or "mtime"
    disks: tuple[Disk, ...]
    parts: tuple[str, ...]  # the partitions the `parts` file names
    rescuezilla: bool
    unsupported: str | None = None  # one sentence: what of it cannot be restored
    notes: list[str] = field(default_factory=list)

    @property
    def compressors(self) -> list[str]:
        found = {
            p.stream.compressor for d in self.disks for p in d.partitions if p.stream is not None
        }
        return sorted(found)

    @property
    def stored_bytes(self) -> int:
        return sum(p.stream.size for d in self.disks for p in d.partitions if p.stream)

    @property
    def kind(self) -> str:
        return "Rescuezilla image" if self.rescuezilla else "Clonezilla image"

    def one_disk(self, job: str) -> Disk:
        """The folder's one whole disk, for a `job` ("restore" or "import"); one sentence
        when the folder holds what the job cannot take."""
        restore = job == "restore"
        if self.unsupported:
            raise UnsupportedImage(
                self.unsupported
                if restore
                else self.unsupported.replace("cannot be restored", "cannot be imported")
            )
        if not (self.path / "disk").is_file():
            raise UnsupportedImage(
                f"The Clonezilla image {self.name} holds only some partitions (saved with "
                "saveparts), not a whole disk; "
                + (
                    "restore it with Clonezilla's restoreparts."
                    if restore
                    else "it cannot be imported."
                )
            )
        if len(self.disks) != 1:
            names = ", ".join(d.name for d in self.disks)
            raise UnsupportedImage(
                f"The Clonezilla image {self.name} holds {len(self.disks)} disks ({names}); "
                + (
                    "restoring one disk of several is not supported yet."
                    if restore
                    else "importing an image of several disks is not supported yet."
                )
            )
        return self.disks[0]


def is_clonezilla(path: Path) -> bool:
    """A Clonezilla or Rescuezilla image folder: `clonezilla-img`, or `disk`/`parts` beside
    an sfdisk dump."""
    if not path.is_dir():
        return False
    if (path / "clonezilla-img").is_file():
        return True
    has_list = (path / "disk").is_file() or (path / "parts").is_file()
    return has_list and any(path.glob("*-pt.sf"))


def find_folder(repo: str, name: str) -> Path | None:
    """The Clonezilla image folder NAME in `repo` (or `repo` itself when it is that folder);
    None when NAME is an image of our repository there, or no such folder exists."""
    root = Path(repo)
    if (root / "repo.json").is_file() and (root / "images" / name).is_dir():
        return None
    if name and "/" not in name and is_clonezilla(root / name):
        return root / name
    if root.name == name and is_clonezilla(root):
        return root
    return None


def find_images(folder: Path) -> list[Path]:
    """`folder` itself when it is an image folder, else the image folders directly in it."""
    if is_clonezilla(folder):
        return [folder]
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []
    return [p for p in children if is_clonezilla(p)]


def load(path: Path) -> ClonezillaImage:
    """Read an image folder; a folder that is not one, or whose table is missing or
    unreadable, is an ImageError sentence naming it."""
    if not is_clonezilla(path):
        raise ImageError(
            f"{path} is not a Clonezilla image folder "
            "(it has no clonezilla-img, disk or parts file)."
        )
    names = {p.name for p in path.iterdir()}
    disk_names = _words(path / "disk")
    parts = tuple(_words(path / "parts"))
    if not disk_names:  # a saveparts image: the disks are those whose tables were saved
        disk_names = sorted(n.removesuffix("-pt.sf") for n in names if n.endswith("-pt.sf"))
    streams = streams_of(path, names)
    swaps = swaps_of(path, names)
    disks = tuple(_disk(path, d, names, streams, swaps) for d in disk_names)
    date, date_from = _date(path)
    return ClonezillaImage(
        path=path,
        name=path.name,
        date=date,
        date_from=date_from,
        disks=disks,
        parts=parts,
        rescuezilla=any(n.startswith("rescuezilla") for n in names),
        unsupported=_unsupported(path, names, disks, streams),
    )


def _words(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").split()
    except OSError:
        return []


def streams_of(path: Path, names: set[str]) -> dict[str, Stream]:
    """Partition name -> its stream, from the file names (of the folder `path`)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        m = _PIECE_OF.match(name)
        if m is not None and (_STREAM.match(m.group("base")) or _LEGACY_DD.match(m.group("base"))):
            groups.setdefault(m.group("base"), []).append(name)
    out: dict[str, Stream] = {}
    for base, files in groups.items():
        ordered = tuple(path / f for f in sorted(files, key=lambda n: (len(n), n)))
        m = _STREAM.match(base)
        if m is not None:
            kind = "raw" if m.group("fs") == "dd" else "partclone"
            comp = COMPRESSORS.get(m.group("comp"), m.group("comp"))
            out[m.group("part")] = Stream(path / base, ordered, kind, comp)
        else:  # old Clonezilla's dd: gzip, though the name does not say so
            part = base.removesuffix(".dd-img")
            out[part] = Stream(path / base, ordered, "raw", "gzip")
    return out


def _fs_of(path: Path, part: str, streams: dict[str, Stream]) -> str | None:
    stream = streams.get(part)
    return None if stream is None else fstype_of(stream)


def fstype_of(stream: Stream) -> str | None:
    """blkid's TYPE of what a stream holds, as its file name says (None: raw bytes)."""
    m = _STREAM.match(stream.base.name)
    if m is None:
        return None
    fs = m.group("fs")
    return _FS_NAMES.get(fs, fs)


def other_streams(names: set[str]) -> dict[str, str]:
    """Partition name -> what saved it, for the streams of programs this appliance does not
    read (ntfsclone, partimage: old Clonezilla options)."""
    out: dict[str, str] = {}
    for name in sorted(names):
        m = _OTHER_IMG.match(name)
        if m is None or "-ptcl-img" in name or ".dd-img" in name:
            continue
        ntfs = m["fs"] == "ntfs"
        what = "an ntfsclone image" if ntfs else f"an image by another program ({m['fs']}-img)"
        out.setdefault(m["part"], what)
    return out


def swaps_of(path: Path, names: set[str]) -> dict[str, tuple[str | None, str | None]]:
    """Partition name -> (UUID, LABEL) of each swap partition (`swappt-<part>.info`)."""
    out: dict[str, tuple[str | None, str | None]] = {}
    for name in names:
        if name.startswith("swappt-") and name.endswith(".info"):
            values = dict(
                re.findall(
                    r'^(\w+)="?([^"\n]*)"?$', (path / name).read_text(errors="replace"), re.M
                )
            )
            out[name[len("swappt-") : -len(".info")]] = (
                values.get("UUID") or None,
                values.get("LABEL") or None,
            )
    return out


def parse_sfdisk_dump(text: str, what: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """An `sfdisk --dump`: its header (label, label-id, first-lba, ...) and one dict per
    partition line (node, start, size, type, uuid, name, attrs, bootable)."""
    header: dict[str, str] = {}
    entries: list[dict[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if " : " in line or line.startswith("/dev/"):
            node, _, rest = line.partition(":")
            entry = {"node": node.strip()}
            for item in _fields(rest):
                key, eq, value = item.partition("=")
                entry[key.strip()] = value.strip().strip('"') if eq else "yes"
            entries.append(entry)
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise ImageError(
                f"The partition table {what} has a line that is not sfdisk's: {line!r}."
            )
        header[key.strip()] = value.strip()
    entries = [e for e in entries if e.get("size", "1").strip() not in ("0", "")]
    if "label" not in header and any("Id" in e for e in entries):
        header["label"] = "dos"  # util-linux before 2.26 wrote no label line
    for entry in entries:
        if "type" not in entry and "Id" in entry:
            entry["type"] = entry.pop("Id").strip()
    if header.get("label") not in ("gpt", "dos"):
        raise UnsupportedImage(
            f"The partition table {what} is a {header.get('label', 'unknown')!r} table; "
            "this appliance restores GPT and MBR (dos) tables."
        )
    return header, entries


def _fields(rest: str) -> list[str]:
    """Comma-separated fields, commas inside quotes kept (a GPT name may hold one)."""
    out: list[str] = []
    buf: list[str] = []
    quoted = False
    for ch in rest:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
    if "".join(buf).strip():
        out.append("".join(buf).strip())
    return [f for f in out if f]


def _disk(
    path: Path,
    name: str,
    names: set[str],
    streams: dict[str, Stream],
    swaps: dict[str, tuple[str | None, str | None]],
) -> Disk:
    table = path / f"{name}-pt.sf"
    if not table.is_file():
        raise ImageError(
            f"The Clonezilla image {path.name} has no partition table for {name} "
            f"({table.name} is missing)."
        )
    header, entries = parse_sfdisk_dump(
        table.read_text(errors="replace"), f"{table.name} of image {path.name}"
    )
    sector = int(header.get("sector-size", "512"))
    size = _parted_size(path / f"{name}-pt.parted", sector)
    fs_list = _dev_fs(path / "dev-fs.list")
    partitions = []
    for entry in entries:
        part = entry["node"].removeprefix("/dev/").replace("/", "-")
        digits = re.search(r"(\d+)$", part)
        number = int(digits.group(1)) if digits else 0
        ptype = entry.get("type", "")
        extended = header["label"] == "dos" and ptype.lower() in ("5", "f", "85")
        fstype = _fs_of(path, part, streams)
        if fstype is None and part in swaps:
            fstype = "swap"
        if fstype is None and not extended:  # dd-saved: dev-fs.list says what it held
            listed = fs_list.get(part)
            fstype = None if listed in (None, "raw", "dd", "") else _FS_NAMES.get(listed, listed)
        uuid, label = swaps.get(part, (None, None))
        partitions.append(
            Partition(
                name=part,
                number=number,
                start=int(entry.get("start", "0")) * sector,
                size=int(entry.get("size", "0")) * sector,
                type=ptype,
                bootable="bootable" in entry,
                fstype=fstype,
                stream=streams.get(part),
                swap_uuid=uuid,
                swap_label=label,
                extended=extended,
            )
        )
    boot = {
        key: path / f"{name}-{key}"
        for key in ("mbr", "hidden-data-after-mbr", "gpt-1st", "gpt-2nd")
        if f"{name}-{key}" in names
    }
    for p in partitions:
        if p.extended and f"{p.name}-ebr" in names:
            boot["ebr"] = path / f"{p.name}-ebr"
    return Disk(name, header["label"], sector, size, table, header, tuple(partitions), boot)


def _parted_size(path: Path, sector: int) -> int | None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"^Disk /dev/\S+: (\d+)s$", text, re.M)
    return int(m.group(1)) * sector if m else None


def _dev_fs(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        words = line.split()  # device, filesystem (may be empty), size
        if len(words) >= 2 and words[0].startswith("/dev/"):
            fs = words[1] if len(words) >= 3 else ""
            out[words[0].removeprefix("/dev/").replace("/", "-")] = fs
    return out


def _date(path: Path) -> tuple[str, str]:
    try:
        first = (path / "clonezilla-img").read_text(errors="replace")[:300]
    except OSError:
        first = ""
    m = _SAVED_AT.search(first)
    if m:
        when = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
        if m.group(2) == "UTC":
            return when.replace(tzinfo=dt.UTC).isoformat(), "clonezilla-img"
        return when.isoformat(), "clonezilla-img"
    mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(microsecond=0)
    return mtime.isoformat(), "mtime"


def _unsupported(
    path: Path, names: set[str], disks: tuple[Disk, ...], streams: dict[str, Stream]
) -> str | None:
    why = [text for file, text in _UNSUPPORTED if file in names]
    if any(n.startswith("lvm_") for n in names) and "it holds LVM volume groups" not in why:
        why.append("it holds LVM volume groups")
    old = sorted({m.group("part") for n in names if (m := _NTFSCLONE.match(n))})
    if old:
        why.append(f"{', '.join(old)} were saved with ntfsclone (an old Clonezilla option)")
    known = {p.name for d in disks for p in d.partitions}
    stray = sorted(set(streams) - known)
    if stray and not why:
        why.append(f"{', '.join(stray)} are not partitions of its saved tables")
    if not why:
        return None
    return f"The Clonezilla image {path.name} cannot be restored here: {'; '.join(why)}."

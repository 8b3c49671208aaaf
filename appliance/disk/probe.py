"""Disk discovery: the machine's whole disks as immutable `Disk`/`Partition` inventories.

Identity comes from identity (udev, then sysfs), the table from parted_table (libparted plus
sfdisk), filesystems from fsprobe (blkid). Probing never writes; only `partition_node` and
`sync_partitions` change anything, and only the kernel's view of a table (`partx`), never
the disk. The kernel of the appliance may have no partition-table parser, and loop devices
never scan their tables, so partition nodes exist only after `partx` has added them. The
disk the appliance booted from (bootmedium) is probed for its identity only: `boot_stick`.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from dataclasses import dataclass, replace

from appliance.disk import identity
from appliance.disk import marker as restoremark
from appliance.disk.bootmedium import boot_disks
from appliance.disk.fsprobe import FsInfo, probe_filesystem
from appliance.disk.model import Disk, Partition
from appliance.disk.parted import TableEntry, read_table
from appliance.errors import ApplianceError, DeviceError, ToolFailed
from appliance.tools import run

log = logging.getLogger(__name__)

DEV = "/dev"

_WHOLE_DISK = re.compile(r"(sd|hd|vd|xvd)[a-z]+|nvme\d+n\d+|mmcblk\d+")
_LOOP = re.compile(r"loop\d+")
# Block devices that are not disks the appliance images, and how to name them to a user.
_NOT_DISKS = (
    ("zram", "a compressed RAM disk"),
    ("ram", "a RAM disk"),
    ("sr", "an optical drive"),
    ("dm-", "a device-mapper volume (LVM or encryption)"),
    ("md", "a software RAID array"),
    ("nbd", "a network block device"),
)


@dataclass(frozen=True)
class Problem:
    """A disk that exists but cannot be probed, with the sentence that says why."""

    name: str
    node: str
    error: str


@dataclass(frozen=True)
class Scan:
    disks: tuple[Disk, ...]
    problems: tuple[Problem, ...]


def is_disk_name(name: str, include_loop: bool = False) -> bool:
    """Whether kernel name `name` is a whole disk the appliance works with."""
    if _WHOLE_DISK.fullmatch(name):
        return True
    return include_loop and _LOOP.fullmatch(name) is not None


def partition_name(disk_name: str, number: int) -> str:
    """sda -> sda1, nvme0n1 -> nvme0n1p1, loop3 -> loop3p1, mmcblk0 -> mmcblk0p1."""
    separator = "p" if disk_name[-1:].isdigit() else ""
    return f"{disk_name}{separator}{number}"


def _natural(name: str) -> tuple[str | int, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def resolve_name(node_or_name: str, sysfs: str = identity.SYSFS) -> str:
    """The kernel name of a whole disk given as /dev/sda, sda or a /dev/disk/by-* symlink."""
    if "/" in node_or_name:
        try:
            info = os.stat(node_or_name)
        except OSError as exc:
            raise DeviceError(f"There is no disk called {node_or_name}.") from exc
        if not stat.S_ISBLK(info.st_mode):
            raise DeviceError(f"{node_or_name} is not a disk (it is not a block device).")
        link = os.path.join(
            sysfs, "dev", "block", f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}"
        )
        if not os.path.exists(link):
            raise DeviceError(f"The kernel does not know the device {node_or_name}.")
        name = os.path.basename(os.path.realpath(link))
    else:
        name = node_or_name
        if not name or not os.path.exists(identity.block_dir(name, sysfs)):
            raise DeviceError(f"There is no disk called {node_or_name}.")
    if identity.is_partition(name, sysfs):
        parent = identity.parent_disk(name, sysfs)
        where = f" ({DEV}/{parent})" if parent else ""
        raise DeviceError(
            f"{node_or_name} is a partition, not a whole disk; name the disk it is on{where}."
        )
    if not is_disk_name(name, include_loop=True):
        what = next(
            (text for prefix, text in _NOT_DISKS if name.startswith(prefix)),
            "a kind of block device",
        )
        raise DeviceError(f"{node_or_name} is {what}, not a disk the appliance works with.")
    return name


def _fs_for(entry: TableEntry, node: str) -> FsInfo:
    if not node or entry.kind == "extended":
        return FsInfo()  # an extended partition holds the logical partitions' table only
    return probe_filesystem(node)


def _partition(
    entry: TableEntry, kernel: dict[int, tuple[str, int, int]], filesystems: bool = True
) -> Partition:
    node = ""
    seen = kernel.get(entry.number)
    if seen is not None and _matches(entry, seen[1], seen[2]):
        candidate = os.path.join(DEV, seen[0])
        node = candidate if os.path.exists(candidate) else ""
    fs = _fs_for(entry, node) if filesystems else FsInfo()
    return Partition(
        number=entry.number,
        start=entry.start,
        size=entry.size,
        node=node,
        type=entry.type,
        kind=entry.kind,
        guid=entry.guid,
        name=entry.name,
        flags=entry.flags,
        fstype=fs.type,
        fsversion=fs.version,
        label=fs.label,
        uuid=fs.uuid,
    )


def _matches(entry: TableEntry | Partition, start: int, size: int) -> bool:
    """Whether the kernel's partition lies where the table puts it (the kernel gives an
    extended partition a size of one or two sectors, so only its start counts)."""
    return start == entry.start and (entry.kind == "extended" or size == entry.size)


def _identity_only(ident: identity.Identity, node: str) -> Disk:
    """The disk as its identity says, before its table is read."""
    return Disk(
        name=ident.name,
        node=node,
        size=ident.size,
        logical_sector=ident.logical_sector,
        physical_sector=ident.physical_sector,
        model=ident.model,
        serial=ident.serial,
        devnum=ident.devnum,
        removable=ident.removable,
        readonly=ident.readonly,
        is_loop=ident.is_loop,
        backing_file=ident.backing_file,
    )


def _build(
    ident: identity.Identity, boot: frozenset[str] = frozenset(), filesystems: bool = True
) -> Disk:
    node = os.path.join(DEV, ident.name)
    if ident.size == 0:
        raise DeviceError(f"{node} is empty (0 bytes): no medium, or nothing attached to it.")
    if ident.name in boot:
        # the stick the appliance booted from: its identity only. Its table is not read (a
        # hybrid ISO carries an MBR, an Apple partition map and a GPT that libparted reads
        # as "mac"), since no job reads or writes it.
        return replace(_identity_only(ident, node), boot_stick=True)
    table = read_table(node)
    kernel = identity.kernel_partitions(ident.name)
    entries = table.partitions if table else ()
    partitions = tuple(_partition(entry, kernel, filesystems) for entry in entries)
    return replace(
        _identity_only(ident, node),
        table=table.type if table else None,
        table_id=table.id if table else None,
        first_lba=table.first_lba if table else None,
        last_lba=table.last_lba if table else None,
        partitions=partitions,
        incomplete=_incomplete(node),
        sfdisk=table.sfdisk if table else None,
    )


def _incomplete(node: str) -> str | None:
    marker = restoremark.read_marker(node)
    return marker.describe() if marker else None


def probe_disk(node_or_name: str, *, filesystems: bool = True) -> Disk:
    """Everything about one whole disk: identity, table, partitions and their filesystems.
    `filesystems=False`: the table only, every partition's filesystem left unknown (blkid
    reads each partition's first sectors: 10-25 ms a partition when they are not cached)."""
    ident = identity.read_identity(resolve_name(node_or_name))
    return _build(ident, boot_disks(), filesystems)


def scan_disks(include_loop: bool = False) -> Scan:
    """All whole disks, plus the ones that exist but cannot be probed (with the reason)."""
    disks: list[Disk] = []
    problems: list[Problem] = []
    boot = boot_disks()
    for name in sorted(identity.disk_names(), key=_natural):
        if not is_disk_name(name, include_loop):
            continue
        if _read_hidden(name):
            continue  # NVMe multipath paths (nvme0c0n1) are hidden behind their namespace
        try:
            ident = identity.read_identity(name)
            if ident.size == 0 or (ident.is_loop and not ident.backing_file):
                continue  # an empty card reader, a loop device with nothing attached
            disks.append(_build(ident, boot))
        except ApplianceError as exc:  # unreadable, damaged table, unplugged while probed
            log.info("cannot probe %s: %s", name, exc)
            problems.append(Problem(name, os.path.join(DEV, name), str(exc)))
    return Scan(tuple(disks), tuple(problems))


def _read_hidden(name: str) -> bool:
    try:
        with open(os.path.join(identity.SYSFS, "block", name, "hidden"), encoding="ascii") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def list_disks(include_loop: bool = False) -> list[Disk]:
    """The whole disks that can be probed (loop devices with a backing file too on request)."""
    return list(scan_disks(include_loop).disks)


def _partx(args: list[str], disk: Disk, number: int) -> None:
    try:
        run(["partx", *args, "--nr", str(number), disk.node], timeout=60)
    except ToolFailed as exc:
        raise DeviceError(
            f"The kernel's view of partition {number} on {disk.node} cannot be "
            f"updated ({exc}); is the partition in use?"
        ) from exc


def _ensure(disk: Disk, part: Partition) -> str:
    """Make the kernel's partition `part` of `disk` match the table; return its node."""
    seen = identity.kernel_partitions(disk.name).get(part.number)
    if (
        seen is not None
        and _matches(part, seen[1], seen[2])
        and os.path.exists(os.path.join(DEV, seen[0]))
    ):
        return os.path.join(DEV, seen[0])
    if seen is not None:
        _partx(["--delete"], disk, part.number)  # stale: the table changed since it was added
    _drop_overlapping(disk, part)
    _partx(["--add"], disk, part.number)
    seen = _await_nodes(disk, [part.number]).get(part.number)
    if seen is None:
        raise DeviceError(
            f"The kernel did not create partition {part.number} of "
            f"{disk.node}; read the disk again, its table may have changed."
        )
    if not _matches(part, seen[1], seen[2]):
        raise DeviceError(
            f"The kernel sees partition {part.number} of {disk.node} elsewhere "
            "than the table that was read; read the disk again."
        )
    return os.path.join(DEV, seen[0])


def _drop_overlapping(disk: Disk, part: Partition) -> None:
    """Delete the kernel's partitions of `disk` that overlap `part` and are not where the
    table puts them: the kernel refuses to add a partition over another. They are left over
    from an earlier table (a loop device reattached to another image keeps the partitions
    partx gave the last one); one in use makes the delete fail, with its sentence."""
    end = part.start + part.size
    for number, (_name, start, size) in sorted(identity.kernel_partitions(disk.name).items()):
        if number == part.number or start >= end or part.start >= start + max(size, 1):
            continue
        mine = disk.partition(number)
        if mine is None or not _matches(mine, start, size):
            _partx(["--delete"], disk, number)


def partition_node(disk: Disk, number: int) -> str:
    """The device node of partition `number`, asking the kernel (partx) to create it if needed."""
    part = disk.partition(number)
    if part is None:
        raise DeviceError(f"{disk.node} has no partition {number}.")
    return _ensure(disk, part)


def sync_partitions(disk: Disk) -> None:
    """Make the kernel's partitions of `disk` exactly those of its table (after a restore).

    Every kernel partition that is not in the table, or sits elsewhere, goes first: an old
    partition that overlaps a new one would make the kernel refuse to add the new one."""
    wanted = {part.number: part for part in disk.partitions}
    for number, (_name, start, size) in sorted(identity.kernel_partitions(disk.name).items()):
        part = wanted.get(number)
        if part is None or not _matches(part, start, size):
            _partx(["--delete"], disk, number)
    for part in disk.partitions:
        _ensure(disk, part)


def probe_source(node_or_name: str) -> Disk:
    """`probe_disk` for a disk a job reads by its filesystems (save, clone, verify against
    an image). Where the kernel's partitions are missing or stale (a loop device attached
    without a partition scan, or reattached to another image: this kernel reads no tables),
    they are first made to match the table: otherwise no filesystem is seen on them, and a
    save would copy every partition whole as unformatted, with no map and no proof."""
    disk = probe_disk(node_or_name)
    if any(not part.node and part.kind != "extended" for part in disk.partitions):
        sync_partitions(disk)
        disk = probe_disk(node_or_name)
    return disk


def _blkpg(args: list[str], disk: Disk, number: int) -> None:
    try:
        run(args, timeout=60)
    except ToolFailed as exc:
        raise DeviceError(
            f"The kernel's view of partition {number} on {disk.node} cannot be "
            f"changed ({exc}); is the partition in use?"
        ) from exc


def set_kernel_partitions(disk: Disk, parts: list[tuple[int, int, int]]) -> dict[int, str]:
    """Make the kernel's partitions of `disk` exactly `parts` ((number, start, size) in bytes)
    with BLKPG (util-linux addpart/delpart), whatever the disk's table says: a restore tells
    the kernel its partitions while no valid table is on the disk yet. Returns their nodes."""
    wanted = {number: (start, size) for number, start, size in parts}
    for number, (_name, start, size) in sorted(identity.kernel_partitions(disk.name).items()):
        if wanted.get(number) != (start, size):
            _blkpg(["delpart", disk.node, str(number)], disk, number)
    have = identity.kernel_partitions(disk.name)
    for number, start, size in parts:
        if number not in have:
            _blkpg(
                ["addpart", disk.node, str(number), str(start // 512), str(size // 512)],
                disk,
                number,
            )
    # all added, then one wait (one at a time, each wait took a polling step: 20-40 ms each)
    found = _await_nodes(disk, [number for number, _start, _size in parts])
    missing = [number for number, _start, _size in parts if number not in found]
    if missing:
        raise DeviceError(f"The kernel did not create partition {missing[0]} of {disk.node}.")
    return {number: os.path.join(DEV, entry[0]) for number, entry in found.items()}


def _await_nodes(disk: Disk, numbers: list[int]) -> dict[int, tuple[str, int, int]]:
    """The kernel's partitions `numbers` of `disk` (number -> (name, start, size)) once each
    has its node, which devtmpfs makes as the kernel adds it; after two seconds, those that
    have one."""
    deadline = time.monotonic() + 2.0
    while True:
        seen = identity.kernel_partitions(disk.name)
        found = {
            number: seen[number]
            for number in numbers
            if number in seen and os.path.exists(os.path.join(DEV, seen[number][0]))
        }
        if len(found) == len(numbers) or time.monotonic() > deadline:
            return found
        time.sleep(0.005)

"""Who a block device is: model, serial, size, sector sizes, flags, numbers, loop backing file.

udev's properties come first when udevd has run (ID_MODEL, ID_SERIAL_SHORT, ...); sysfs fills
in everything else and is the only source on a system without udevd. Every function takes the
sysfs root as a parameter so that tests can build a fake tree under a temporary folder.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from appliance.errors import DeviceError

try:
    import pyudev
except ImportError:  # pragma: no cover - pyudev is a declared dependency
    pyudev = None

SYSFS = "/sys"

# Model names for virtual disks whose sysfs has no model file.
_VIRTUAL_MODELS = {"vd": "VirtIO disk", "xvd": "Xen virtual disk"}


@dataclass(frozen=True)
class Identity:
    name: str  # kernel name: sda, nvme0n1, loop3
    size: int  # bytes
    logical_sector: int  # bytes
    physical_sector: int  # bytes
    model: str | None
    serial: str | None
    devnum: tuple[int, int]  # major, minor
    removable: bool
    readonly: bool
    is_loop: bool
    backing_file: str | None  # loop devices only; None when nothing is attached


def _read(path: str) -> str | None:
    """A sysfs attribute as stripped text, or None when it is absent or unreadable."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    text = raw.decode("utf-8", errors="replace").replace("\x00", "").strip()
    return text or None


def _read_int(path: str, default: int) -> int:
    text = _read(path)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        return default


def decode_udev(value: str) -> str:
    r"""Undo udev's \xNN escaping (ID_MODEL_ENC): "Samsung\x20SSD" -> "Samsung SSD"."""
    out = bytearray()
    i = 0
    raw = value.encode("utf-8", errors="replace")
    while i < len(raw):
        if raw[i : i + 2] == b"\\x" and i + 4 <= len(raw):
            try:
                out.append(int(raw[i + 2 : i + 4], 16))
                i += 4
                continue
            except ValueError:
                pass
        out.append(raw[i])
        i += 1
    return out.decode("utf-8", errors="replace")


_local = threading.local()


def _udev_context() -> pyudev.Context:
    """This thread's udev context (libudev's are not to be shared between threads). Each new
    one finds libudev again, and ctypes runs `ldconfig -p` for that: 5-10 ms a probe."""
    context = getattr(_local, "udev", None)
    if context is None:
        context = _local.udev = pyudev.Context()
    return context


def udev_properties(name: str) -> dict[str, str]:
    """udev's properties of block device `name` ({} without pyudev or without the device)."""
    if pyudev is None:  # pragma: no cover
        return {}
    try:
        device = pyudev.Devices.from_name(_udev_context(), "block", name)
        return {str(key): str(device.properties[key]) for key in device.properties}
    except (pyudev.DeviceNotFoundError, OSError, ImportError):
        return {}


def vpd_serial(raw: bytes) -> str | None:
    """The unit serial number in a SCSI VPD page 0x80 (4-byte header, then ASCII)."""
    if len(raw) < 4 or raw[1] != 0x80:
        return None
    length = int.from_bytes(raw[2:4], "big")
    text = raw[4 : 4 + length].decode("ascii", errors="replace").replace("\x00", "").strip()
    return text or None


def _sysfs_model(name: str, block: str) -> str | None:
    device = os.path.join(block, "device")
    for attribute in ("model", "name"):  # name: MMC/SD cards
        value = _read(os.path.join(device, attribute))
        if value:
            return value
    for prefix, model in _VIRTUAL_MODELS.items():
        if name.startswith(prefix):
            return model
    return None


def _sysfs_serial(block: str) -> str | None:
    device = os.path.join(block, "device")
    for path in (os.path.join(device, "serial"), os.path.join(block, "serial")):
        value = _read(path)  # NVMe and MMC: device/serial; virtio: serial
        if value:
            return value
    try:
        with open(os.path.join(device, "vpd_pg80"), "rb") as handle:
            serial = vpd_serial(handle.read())
        if serial:
            return serial
    except OSError:
        pass
    wwid = _read(os.path.join(device, "wwid"))  # "t10.ATA     QEMU HARDDISK   QM00001"
    return " ".join(wwid.split()) if wwid else None


def _udev_model(props: Mapping[str, str]) -> str | None:
    if props.get("ID_MODEL_ENC"):
        model = decode_udev(props["ID_MODEL_ENC"]).strip()
        if model:
            return model
    model = props.get("ID_MODEL", "").replace("_", " ").strip()
    return model or None


def _udev_serial(props: Mapping[str, str]) -> str | None:
    serial = (props.get("ID_SERIAL_SHORT") or props.get("ID_SERIAL") or "").strip()
    return serial or None


def parse_devnum(text: str | None) -> tuple[int, int]:
    """A device number as sysfs `dev` files and mountinfo write it, "8:17" -> (8, 17);
    (0, 0) for missing or malformed text (no device has it)."""
    if text is None or ":" not in text:
        return (0, 0)
    major, _, minor = text.strip().partition(":")
    try:
        return (int(major), int(minor))
    except ValueError:
        return (0, 0)


def partition_number(node: str) -> int | None:
    """The partition number at the end of a node name: sda12 -> 12, /dev/nvme0n1p2 -> 2,
    mmcblk0p3 -> 3, loop7p1 -> 1; None when the name ends in no digit."""
    digits = len(node) - len(node.rstrip("0123456789"))
    return int(node[-digits:]) if digits else None


def block_dir(name: str, sysfs: str = SYSFS) -> str:
    """The sysfs folder of a block device (disk or partition): SYSFS/class/block/NAME."""
    return os.path.join(sysfs, "class", "block", name)


def is_partition(name: str, sysfs: str = SYSFS) -> bool:
    return os.path.exists(os.path.join(block_dir(name, sysfs), "partition"))


def parent_disk(name: str, sysfs: str = SYSFS) -> str | None:
    """The disk a partition belongs to (its sysfs folder sits inside the disk's folder)."""
    real = os.path.realpath(block_dir(name, sysfs))
    parent = os.path.basename(os.path.dirname(real))
    return parent if os.path.isdir(os.path.join(sysfs, "block", parent)) else None


def disk_names(sysfs: str = SYSFS) -> list[str]:
    """Kernel names of all whole block devices (SYSFS/block), sorted."""
    try:
        return sorted(os.listdir(os.path.join(sysfs, "block")))
    except OSError:
        return []


def read_identity(
    name: str, *, sysfs: str = SYSFS, udev: Mapping[str, str] | None = None
) -> Identity:
    """The identity of whole disk `name`; `udev` overrides the properties udev would give."""
    block = os.path.join(sysfs, "block", name)
    if not os.path.isdir(block):
        raise DeviceError(f"There is no disk called {name}.")
    if udev is None:
        udev = udev_properties(name) if sysfs == SYSFS else {}
    is_loop = name.startswith("loop")
    logical = _read_int(os.path.join(block, "queue", "logical_block_size"), 512)
    physical = _read_int(os.path.join(block, "queue", "physical_block_size"), logical)
    backing = _read(os.path.join(block, "loop", "backing_file")) if is_loop else None
    if is_loop:
        model: str | None = "Loop device"
        serial: str | None = None
    else:
        model = _udev_model(udev) or _sysfs_model(name, block)
        serial = _udev_serial(udev) or _sysfs_serial(block)
    return Identity(
        name=name,
        size=_read_int(os.path.join(block, "size"), 0) * 512,  # always 512-byte units
        logical_sector=logical,
        physical_sector=max(physical, logical),
        model=model,
        serial=serial,
        devnum=parse_devnum(_read(os.path.join(block, "dev"))),
        removable=_read_int(os.path.join(block, "removable"), 0) == 1,
        readonly=_read_int(os.path.join(block, "ro"), 0) == 1,
        is_loop=is_loop,
        backing_file=backing,
    )


def kernel_partition(disk: str, partition: str, sysfs: str = SYSFS) -> tuple[int, int] | None:
    """(start, size) in bytes of the kernel's partition device, or None when it has none."""
    folder = os.path.join(sysfs, "block", disk, partition)
    start = _read(os.path.join(folder, "start"))
    size = _read(os.path.join(folder, "size"))
    if start is None or size is None:
        return None
    try:
        return (int(start) * 512, int(size) * 512)  # sysfs counts 512-byte units
    except ValueError:
        return None


def check_readable(node: str) -> int:
    """Open `node`, read its first block and return its size in bytes; DeviceError with a
    user sentence when it cannot be opened or read."""
    try:
        fd = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.pread(fd, 4096, 0)
            return os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)
    except OSError as exc:
        raise DeviceError(_open_sentence(node, exc)) from exc


def _open_sentence(node: str, exc: OSError) -> str:
    code = exc.errno
    if code == errno.ENOENT:
        return f"There is no device {node}."
    if code in (errno.EACCES, errno.EPERM):
        return f"The system does not allow opening {node} (permission denied)."
    if code == errno.ENOMEDIUM:
        return f"{node} has no medium in it (an empty card reader?)."
    if code == errno.EIO:
        return f"{node} cannot be read (input/output error); the disk may be failing."
    if code in (errno.ENXIO, errno.ENODEV):
        return f"{node} is gone; was it unplugged?"
    return f"{node} cannot be opened: {exc.strerror or code}."


def kernel_partitions(disk: str, sysfs: str = SYSFS) -> dict[int, tuple[str, int, int]]:
    """The partitions the kernel has for `disk`: number -> (name, start, size), in bytes."""
    folder = os.path.join(sysfs, "block", disk)
    found: dict[int, tuple[str, int, int]] = {}
    try:
        entries = os.listdir(folder)
    except OSError:
        return found
    for entry in entries:
        number = _read_int(os.path.join(folder, entry, "partition"), 0)
        geometry = kernel_partition(disk, entry, sysfs) if number else None
        if geometry is not None:
            found[number] = (entry, *geometry)
    return found

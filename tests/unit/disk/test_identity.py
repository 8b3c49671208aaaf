"""identity: disk identity from fake sysfs trees and recorded udev properties."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.disk.identity import (
    check_readable,
    decode_udev,
    disk_names,
    is_partition,
    kernel_partitions,
    parent_disk,
    read_identity,
    udev_properties,
    vpd_serial,
)
from appliance.errors import DeviceError


def _tree(
    sysfs: Path, name: str, files: dict[str, str | bytes], devices: str = "devices/pci0000:00"
) -> Path:
    """A disk's sysfs folder under devices/, linked from block/ and class/block/ like the
    kernel does; `files` maps paths inside that folder to their contents."""
    folder = sysfs / devices / "block" / name
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    for links in (sysfs / "block", sysfs / "class" / "block"):
        links.mkdir(parents=True, exist_ok=True)
        if not (links / name).exists():
            (links / name).symlink_to(os.path.relpath(folder, links))
    return folder


def _basics(
    size_512: int,
    dev: str,
    logical: int = 512,
    physical: int = 512,
    removable: str = "0",
    ro: str = "0",
) -> dict[str, str | bytes]:
    return {
        "size": f"{size_512}\n",
        "dev": f"{dev}\n",
        "removable": f"{removable}\n",
        "ro": f"{ro}\n",
        "queue/logical_block_size": f"{logical}\n",
        "queue/physical_block_size": f"{physical}\n",
    }


def _vpd80(serial: str) -> bytes:
    body = serial.encode("ascii")
    return bytes([0, 0x80]) + len(body).to_bytes(2, "big") + body


def test_sata_disk_from_sysfs(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        "sda",
        {
            **_basics(976773168, "8:0", 512, 4096),
            "device/model": "Samsung SSD 860 EVO 500GB              \n",
            "device/vendor": "ATA     \n",
            "device/vpd_pg80": _vpd80("  S3Z9NB0K123456A"),
            "device/wwid": "t10.ATA     Samsung SSD 860   S3Z9NB0K123456A\n",
        },
    )
    ident = read_identity("sda", sysfs=str(tmp_path))
    assert ident.model == "Samsung SSD 860 EVO 500GB"
    assert ident.serial == "S3Z9NB0K123456A"
    assert ident.size == 976773168 * 512
    assert (ident.logical_sector, ident.physical_sector) == (512, 4096)
    assert ident.devnum == (8, 0)
    assert (ident.removable, ident.readonly, ident.is_loop) == (False, False, False)
    assert ident.backing_file is None


def test_wwid_when_no_vpd_page(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        "sdb",
        {
            **_basics(2048, "8:16"),
            "device/model": "QEMU HARDDISK\n",
            "device/wwid": "t10.ATA     QEMU HARDDISK     QM00001\n",
        },
    )
    assert read_identity("sdb", sysfs=str(tmp_path)).serial == "t10.ATA QEMU HARDDISK QM00001"


def test_nvme_4k_namespace(tmp_path: Path) -> None:
    # the size file counts 512-byte units even when the logical sector is 4096 bytes
    _tree(
        tmp_path,
        "nvme0n1",
        {
            **_basics(1953525168, "259:0", 4096, 4096),
            "device/model": "WDC WDS100T2B0C-00PXH0                  \n",
            "device/serial": "20131B802034        \n",
        },
    )
    ident = read_identity("nvme0n1", sysfs=str(tmp_path))
    assert ident.model == "WDC WDS100T2B0C-00PXH0"
    assert ident.serial == "20131B802034"
    assert ident.size == 1953525168 * 512
    assert (ident.logical_sector, ident.physical_sector) == (4096, 4096)


def test_virtio_and_mmc(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        "vda",
        {
            **_basics(536870912, "254:0", 512, 4096),
            "device/vendor": "0x1af4\n",
            "serial": "overlay\n",
        },
    )
    _tree(
        tmp_path,
        "mmcblk0",
        {
            **_basics(62333952, "179:0", removable="1"),
            "device/name": "SL32G\n",
            "device/serial": "0x3a1c5e21\n",
        },
    )
    vda = read_identity("vda", sysfs=str(tmp_path))
    assert (vda.model, vda.serial) == ("VirtIO disk", "overlay")
    mmc = read_identity("mmcblk0", sysfs=str(tmp_path))
    assert (mmc.model, mmc.serial, mmc.removable) == ("SL32G", "0x3a1c5e21", True)


def test_loop_device(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        "loop3",
        {**_basics(131072, "7:3", ro="1"), "loop/backing_file": "/srv/images/disk.img\n"},
        devices="devices/virtual",
    )
    udev = {"ID_MODEL": "Something", "ID_SERIAL_SHORT": "nope"}  # loops have neither
    ident = read_identity("loop3", sysfs=str(tmp_path), udev=udev)
    assert (ident.model, ident.serial) == ("Loop device", None)
    assert ident.is_loop and ident.readonly
    assert ident.backing_file == "/srv/images/disk.img"
    assert ident.devnum == (7, 3)


def test_udev_properties_win(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        "sdc",
        {
            **_basics(2048, "8:32"),
            "device/model": "Cruzer Blade\n",
            "device/vpd_pg80": _vpd80("SYSFS-SERIAL"),
        },
    )
    recorded = {  # `udevadm info --query=property` of a USB stick
        "DEVNAME": "/dev/sdc",
        "DEVTYPE": "disk",
        "ID_BUS": "usb",
        "ID_MODEL": "Cruzer_Blade",
        "ID_MODEL_ENC": "Cruzer\\x20Blade\\x20\\x20\\x20",
        "ID_SERIAL": "SanDisk_Cruzer_Blade_4C530001230912105183-0:0",
        "ID_SERIAL_SHORT": "4C530001230912105183",
        "ID_VENDOR": "SanDisk",
    }
    ident = read_identity("sdc", sysfs=str(tmp_path), udev=recorded)
    assert (ident.model, ident.serial) == ("Cruzer Blade", "4C530001230912105183")
    only_model = {"ID_MODEL": "Cruzer_Blade"}
    ident = read_identity("sdc", sysfs=str(tmp_path), udev=only_model)
    assert (ident.model, ident.serial) == ("Cruzer Blade", "SYSFS-SERIAL")


def test_missing_disk(tmp_path: Path) -> None:
    (tmp_path / "block").mkdir()
    with pytest.raises(DeviceError, match="There is no disk called sdq"):
        read_identity("sdq", sysfs=str(tmp_path))


def test_missing_attributes_have_defaults(tmp_path: Path) -> None:
    _tree(tmp_path, "sdd", {"size": "garbage\n"})
    ident = read_identity("sdd", sysfs=str(tmp_path))
    assert (ident.size, ident.logical_sector, ident.physical_sector) == (0, 512, 512)
    assert (ident.model, ident.serial, ident.devnum) == (None, None, (0, 0))


def test_partitions_in_sysfs(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        "loop0",
        {
            **_basics(131072, "7:0"),
            "loop0p1/partition": "1\n",
            "loop0p1/start": "2048\n",
            "loop0p1/size": "8192\n",
            "loop0p5/partition": "5\n",
            "loop0p5/start": "12288\n",
            "loop0p5/size": "4096\n",
        },
        devices="devices/virtual",
    )
    for part in ("loop0p1", "loop0p5"):
        target = tmp_path / "devices/virtual/block/loop0" / part
        (tmp_path / "class" / "block" / part).symlink_to(target)
    assert kernel_partitions("loop0", str(tmp_path)) == {
        1: ("loop0p1", 2048 * 512, 8192 * 512),
        5: ("loop0p5", 12288 * 512, 4096 * 512),
    }
    assert is_partition("loop0p5", str(tmp_path))
    assert not is_partition("loop0", str(tmp_path))
    assert parent_disk("loop0p5", str(tmp_path)) == "loop0"
    assert disk_names(str(tmp_path)) == ["loop0"]
    assert kernel_partitions("loop9", str(tmp_path)) == {}


def test_vpd_serial_and_udev_decoding() -> None:
    assert vpd_serial(_vpd80("  ABC123  \0")) == "ABC123"
    assert vpd_serial(b"\x00\x83\x00\x04ABCD") is None  # another VPD page
    assert vpd_serial(b"\x00") is None
    assert decode_udev("Samsung\\x20SSD\\x20860") == "Samsung SSD 860"
    assert decode_udev("bad\\xZZend") == "bad\\xZZend"


def test_check_readable(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(b"x" * 10000)
    assert check_readable(str(image)) == 10000
    with pytest.raises(DeviceError, match="There is no device"):
        check_readable(str(tmp_path / "absent"))


def test_udev_properties_of_unknown_device() -> None:
    assert udev_properties("no-such-device-xyz") == {}

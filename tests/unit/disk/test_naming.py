"""Naming a disk by serial:/model: and a partition by LABEL=/UUID=/a /dev/ path."""

from __future__ import annotations

import pytest

from appliance.disk.model import Disk
from appliance.disk.naming import match_disk, resolve_partition
from appliance.errors import DeviceError, UsageError


def disk(name: str, model: str | None, serial: str | None) -> Disk:
    return Disk(
        name=name,
        node=f"/dev/{name}",
        size=10**9,
        logical_sector=512,
        physical_sector=512,
        model=model,
        serial=serial,
    )


DISKS = [
    disk("sda", "Samsung SSD 870 EVO", "S1"),
    disk("sdb", "Samsung SSD 870 EVO", "S2"),
    disk("vda", "VirtIO disk", "SRC-1"),
    disk("nvme0n1", "WD Blue SN570", None),
]


def test_disks_by_serial_and_model() -> None:
    assert match_disk("serial:SRC-1", DISKS).name == "vda"
    assert match_disk("model:WD_Blue_SN570", DISKS).name == "nvme0n1"
    assert match_disk("model:virtio  DISK", DISKS).name == "vda"


def test_two_disks_with_one_model_are_refused() -> None:
    with pytest.raises(UsageError, match="2 disks have the model"):
        match_disk("model:Samsung SSD 870 EVO", DISKS)


def test_unknown_serial_lists_the_disks() -> None:
    with pytest.raises(
        DeviceError,
        match=r"No disk has the serial 'NOPE'\. The disks are: "
        r"Samsung SSD 870 EVO \(serial S1",
    ):
        match_disk("serial:NOPE", DISKS)


def test_repo_spec_must_be_a_tag_or_a_path() -> None:
    with pytest.raises(UsageError, match=r"LABEL=\.\.\., UUID="):
        resolve_partition("sdc1")
    with pytest.raises(UsageError, match="NAME is not one of"):
        resolve_partition("NAME=IMAGES")
    with pytest.raises(DeviceError, match="There is no partition /dev/nonexistent9"):
        resolve_partition("/dev/nonexistent9")

"""The lab-mode target rules on disk models: which disk each rule picks, and the sentence
when it cannot pick one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from appliance.disk.model import Disk
from appliance.errors import DeviceError, UsageError
from appliance.plan.targetrule import choose_target, is_rule, on_usb

GB = 1000**3


def _disk(name: str, size: int, serial: str | None = None, removable: bool = False) -> Disk:
    return Disk(
        name=name,
        node=f"/dev/{name}",
        size=size,
        logical_sector=512,
        physical_sector=512,
        model=f"Model {name}",
        serial=serial,
        removable=removable,
    )


NVME = _disk("nvme0n1", 512 * GB, "S4EVNX0N")
SATA = _disk("sda", 2000 * GB, "WD-WCC4E")
STICK = _disk("sdb", 16 * GB, "4C530001", removable=True)
USB_HDD = _disk("sdc", 4000 * GB, "NA8F1234")  # not removable, but on USB
LIVE = _disk("sdd", 32 * GB, "LIVE0001")


def _usb(disk: Disk) -> bool:
    return disk.name in {"sdb", "sdc"}


def _choose(rule: str, disks: list[Disk]) -> Disk:
    return choose_target(rule, disks, usb=_usb, boot={"sdd"}).disk


def test_rules_and_names_are_told_apart() -> None:
    assert is_rule("auto") and is_rule("internal") and is_rule("largest")
    assert is_rule("serial=XYZ")
    assert not is_rule("sda") and not is_rule("serial:XYZ") and not is_rule("model:X")


def test_internal_is_the_only_disk_that_is_not_usb_removable_or_the_stick() -> None:
    disks = [STICK, USB_HDD, LIVE, NVME]
    assert _choose("internal", disks) == NVME
    choice = choose_target("auto", disks, usb=_usb, boot={"sdd"})
    assert choice.disk == NVME
    assert choice.line == "the only internal disk: /dev/nvme0n1 (Model nvme0n1, 512.0 GB, S4EVNX0N)"


def test_internal_refuses_several_and_none() -> None:
    with pytest.raises(UsageError) as several:
        _choose("internal", [NVME, SATA, STICK])
    assert "found 2 internal disks" in str(several.value)
    assert "/dev/nvme0n1" in str(several.value) and "/dev/sda" in str(several.value)
    assert several.value.exit_code == 2
    with pytest.raises(DeviceError, match="found no internal disk"):
        _choose("auto", [STICK, USB_HDD, LIVE])


def test_largest_skips_usb_disks_even_larger_ones() -> None:
    assert _choose("largest", [NVME, SATA, USB_HDD, STICK, LIVE]) == SATA
    assert _choose("largest", [NVME, USB_HDD]) == NVME
    with pytest.raises(DeviceError, match="largest found no disk"):
        _choose("largest", [USB_HDD, STICK])
    twin = _disk("sde", SATA.size, "OTHER")
    with pytest.raises(UsageError, match="found 2 disks of"):
        _choose("largest", [SATA, twin])


def test_serial_picks_any_disk_with_that_serial() -> None:
    disks = [NVME, SATA, USB_HDD]
    assert _choose("serial=WD-WCC4E", disks) == SATA
    assert _choose("serial=NA8F1234", disks) == USB_HDD  # a serial is explicit: USB allowed
    with pytest.raises(DeviceError, match="No disk has the serial 'NOPE'"):
        _choose("serial=NOPE", disks)


def test_unknown_rule_is_a_sentence() -> None:
    with pytest.raises(UsageError, match="is not a rule"):
        choose_target("biggest", [NVME], usb=_usb, boot=set())


def test_usb_is_read_from_the_sysfs_device_path(tmp_path: Path) -> None:
    usb_dev = tmp_path / "devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/6:0:0:0"
    sata_dev = tmp_path / "devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0"
    for name, dev in (("sdc", usb_dev), ("sda", sata_dev)):
        dev.mkdir(parents=True)
        (tmp_path / "block" / name).mkdir(parents=True)
        (tmp_path / "block" / name / "device").symlink_to(dev)
    assert on_usb(USB_HDD, str(tmp_path))
    assert not on_usb(SATA, str(tmp_path))
    assert not on_usb(NVME, str(tmp_path))  # no device link at all (a loop device)


def test_a_probed_boot_stick_is_never_chosen_by_a_rule() -> None:
    """The disk probe marked as the boot stick is skipped even when `boot` does not name it
    (an internal disk holding the appliance's ISO file, booted with findiso=)."""
    booted = replace(SATA, boot_stick=True)
    assert choose_target("internal", [booted, NVME], usb=_usb, boot=set()).disk == NVME
    assert choose_target("largest", [booted, NVME], usb=_usb, boot=set()).disk == NVME
    with pytest.raises(DeviceError, match="not the boot stick"):
        choose_target("auto", [booted, STICK], usb=_usb, boot=set())

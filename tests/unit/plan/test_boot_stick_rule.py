"""The boot stick rule of plan/safety: one sentence for every job, as a target or a source,
before any other rule."""

from __future__ import annotations

from dataclasses import replace

import pytest

from appliance.disk.model import Disk
from appliance.errors import SafetyRefusal
from appliance.plan import safety

GB = 1000**3
STICK = Disk(
    name="vda",
    node="/dev/vda",
    size=GB,
    logical_sector=512,
    physical_sector=512,
    model="VirtIO disk",
    serial="APPLIANCE-STICK",
    devnum=(254, 0),
    readonly=True,
    boot_stick=True,
)
SENTENCE = (
    "VirtIO disk (serial APPLIANCE-STICK, 1.0 GB) at /dev/vda is the stick this appliance "
    "booted from; choose another disk."
)


def test_a_target_that_is_the_boot_stick_gets_one_sentence_first() -> None:
    """It is read-only and the job's own source too, but the boot stick's sentence says most."""
    with pytest.raises(SafetyRefusal) as refused:
        safety.check_target(STICK, source=STICK, sector=4096, needed_size=10 * GB)
    assert str(refused.value) == SENTENCE
    assert refused.value.exit_code == 5


def test_the_boot_stick_is_no_source_either() -> None:
    with pytest.raises(SafetyRefusal) as refused:
        safety.check_source(STICK)
    assert str(refused.value) == SENTENCE


def test_a_disk_made_without_the_mark_is_refused_by_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Disk built before the medium was looked at (or by hand) is checked by name too."""
    plain = replace(STICK, boot_stick=False, readonly=False)
    monkeypatch.setattr(safety, "boot_disks", lambda: frozenset({"vda"}))
    with pytest.raises(SafetyRefusal, match="is the stick this appliance booted from"):
        safety.check_target(plain)
    monkeypatch.setattr(safety, "boot_disks", lambda: frozenset({"sdb"}))
    safety.check_not_boot_stick(plain)  # another disk: no refusal

"""How `appliance disks` shows the stick the appliance booted from (cli/disks), text and
--json, and the note when it cannot be told (booted with toram)."""

from __future__ import annotations

import io
import json

import pytest

from appliance.cli import disks as disks_cli
from appliance.disk.bootmedium import BootMedium
from appliance.disk.model import Disk
from appliance.disk.probe import Scan

STICK = Disk(
    name="vda",
    node="/dev/vda",
    size=1000**3,
    logical_sector=512,
    physical_sector=512,
    model="VirtIO disk",
    serial="APPLIANCE-STICK",
    devnum=(254, 0),
    readonly=True,
    boot_stick=True,
)


def _disks_output(monkeypatch: pytest.MonkeyPatch, medium: BootMedium, as_json: bool) -> str:
    monkeypatch.setattr(disks_cli, "scan_disks", lambda include_loop: Scan((STICK,), ()))
    monkeypatch.setattr(disks_cli, "find_boot_medium", lambda: medium)
    out = io.StringIO()
    assert disks_cli.run_disks(False, as_json, out) == 0
    return out.getvalue()


MEDIUM = BootMedium("/run/live/medium", "iso9660", frozenset({"vda"}))


def test_disks_names_the_stick_instead_of_its_table(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _disks_output(monkeypatch, MEDIUM, as_json=False)
    assert text.splitlines() == [
        "vda  VirtIO disk, serial APPLIANCE-STICK",
        "  /dev/vda, 1.0 GB (1000000000 bytes), sectors 512 logical / 512 physical,",
        "    read-only",
        "  this boot stick: the appliance runs from it; no job reads or writes it",
    ]


def test_disks_json_adds_the_mark_and_the_medium(monkeypatch: pytest.MonkeyPatch) -> None:
    data = json.loads(_disks_output(monkeypatch, MEDIUM, as_json=True))
    (disk,) = data["disks"]
    assert disk["boot_stick"] is True and disk["table"] is None and disk["partitions"] == []
    assert data["boot_medium"] == {
        "mountpoint": "/run/live/medium",
        "fstype": "iso9660",
        "in_ram": False,
        "note": None,
    }


def test_toram_is_said_since_the_stick_cannot_be_marked(monkeypatch: pytest.MonkeyPatch) -> None:
    ram = BootMedium("/run/live/medium", "tmpfs", frozenset())
    monkeypatch.setattr(disks_cli, "scan_disks", lambda include_loop: Scan((), ()))
    monkeypatch.setattr(disks_cli, "find_boot_medium", lambda: ram)
    out = io.StringIO()
    disks_cli.run_disks(False, False, out)
    assert "runs from RAM (booted with toram)" in out.getvalue()
    out = io.StringIO()
    disks_cli.run_disks(False, True, out)
    assert json.loads(out.getvalue())["boot_medium"]["in_ram"] is True

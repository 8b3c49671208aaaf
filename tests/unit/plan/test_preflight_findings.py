"""preflight: findings from disks described as data (no root, no tools)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.disk.model import Disk, Partition
from appliance.plan import preflight
from appliance.plan.preflight import (
    NtfsState,
    Usage,
    measure_disk,
    preflight_save,
)

MiB = 1024 * 1024
GPT_DATA = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"


def disk(*parts: Partition, table: str | None = "gpt") -> Disk:
    return Disk(
        name="sdz",
        node="/dev/sdz",
        size=4096 * MiB,
        logical_sector=512,
        physical_sector=512,
        model="Test Disk",
        serial="T123",
        table=table,
        last_lba=(4096 * MiB // 512) - 34,
        partitions=parts,
    )


def part(
    number: int, start_mib: int, size_mib: int, fstype: str | None, label: str | None = None
) -> Partition:
    return Partition(
        number,
        start_mib * MiB,
        size_mib * MiB,
        f"/dev/sdz{number}",
        GPT_DATA,
        fstype=fstype,
        label=label,
    )


def measured(used: dict[int, int | None]):  # type: ignore[no-untyped-def]
    def measure(d: Disk, p: Partition) -> Usage:
        value = used.get(p.number)
        if p.fstype == "swap":
            return Usage(p.number, p.node, p.size, 0, "swap")
        method = "raw" if p.fstype not in ("ext4", "ntfs") else "partclone"
        return Usage(p.number, p.node, p.size, p.size if method == "raw" else value, method)

    return measure


def clean(node: str) -> NtfsState:
    return NtfsState(dirty=False, hibernated=False)


@pytest.fixture(autouse=True)
def no_safety(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight, "check_source", lambda disk, repo: None)


def test_estimate_adds_the_table_and_each_partition(tmp_path: Path) -> None:
    d = disk(part(1, 1, 100, "ext4"), part(2, 101, 50, None), part(3, 151, 64, "swap"))
    report = preflight_save(d, str(tmp_path), measure=measured({1: 10 * MiB}), ntfs=clean)
    outside = sum(u.used or 0 for u in report.usage if u.partition is None)
    assert outside >= MiB
    assert report.estimate == outside + 10 * MiB + 50 * MiB
    codes = {f.code: f for f in report.findings}
    assert codes["raw"].level == "info" and codes["raw"].partition == 2
    assert "copied whole (52.4 MB)" in codes["raw"].sentence
    assert codes["space"].level == "info" and not report.blocked


def test_repository_too_small_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight, "free_space", lambda path: 5 * MiB)
    d = disk(part(1, 1, 1000, "ext4"))
    report = preflight_save(d, str(tmp_path), measure=measured({1: 900 * MiB}), ntfs=clean)
    space = next(f for f in report.findings if f.code == "space")
    assert space.level == "warning" and "5.2 MB free" in space.sentence
    assert report.findings[0] is space  # the worst news first
    assert report.worst() == "warning"


def test_windows_hibernated_dirty_and_encrypted(tmp_path: Path) -> None:
    d = disk(
        part(1, 1, 500, "ntfs", "Windows"),
        part(2, 501, 500, "BitLocker"),
        part(3, 1001, 500, "crypto_LUKS"),
    )
    report = preflight_save(
        d,
        str(tmp_path),
        measure=measured({1: 50 * MiB}),
        ntfs=lambda node: NtfsState(dirty=True, hibernated=True),
    )
    by = {(f.code, f.partition): f for f in report.findings}
    assert "hibernated (Fast Startup)" in by[("hibernated", 1)].sentence
    assert "not shut down cleanly" in by[("dirty", 1)].sentence
    assert "BitLocker" in by[("encrypted", 2)].sentence
    assert "LUKS" in by[("encrypted", 3)].sentence and "same key" in by[("encrypted", 3)].sentence
    assert ("raw", 2) not in by  # an encrypted volume is explained once
    assert all(f.sentence.endswith(".") for f in report.findings)


def test_refusal_is_a_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.errors import SafetyRefusal

    def refuse(disk: Disk, repo: Path) -> None:
        raise SafetyRefusal("The source holds the repository; choose another.")

    monkeypatch.setattr(preflight, "check_source", refuse)
    report = preflight_save(
        disk(part(1, 1, 10, "ext4")), str(tmp_path), measure=measured({1: MiB}), ntfs=clean
    )
    assert report.blocked and report.findings[0].code == "refused"


def test_no_table_copies_everything(tmp_path: Path) -> None:
    d = disk(table=None)
    assert measure_disk(d)[0].used == d.size
    report = preflight_save(d, str(tmp_path), ntfs=clean)
    assert any(f.code == "raw" and "no partition table" in f.sentence for f in report.findings)


def test_a_repository_in_ram_is_a_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("appliance.repo.places.filesystem_type", lambda path: "tmpfs")
    report = preflight_save(
        disk(part(1, 1, 10, "ext4")), str(tmp_path / "repo"), measure=measured({1: MiB}), ntfs=clean
    )
    assert report.blocked
    ram = [f for f in report.findings if f.code == "ram"]
    assert len(ram) == 1 and "lost at power off" in ram[0].sentence

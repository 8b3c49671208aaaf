"""The write plan's executor on a plain file: the marker first, held-back sectors last, and
the stop sentence of a job that failed after its first write."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.disk import marker as restoremark
from appliance.disk.model import Disk
from appliance.errors import CorruptData
from appliance.jobs.writeplan import (
    Context,
    MarkIncomplete,
    Step,
    WriteTableLast,
    execute,
    hold_ranges,
)
from appliance.progress import Progress

MiB = 1024 * 1024
MARKER = restoremark.Marker("restore", "laptop", "/repo", "disk", "2026-12-01 15:20:11 UTC")


def disk_file(tmp_path: Path, size: int, sector: int = 512) -> Disk:
    path = tmp_path / "disk.img"
    path.write_bytes(b"\xee" * size)  # what the target held before
    return Disk(
        name="disk", node=str(path), size=size, logical_sector=sector, physical_sector=sector
    )


@dataclass
class CopyAll(Step):
    """Writes `data` over the whole disk the way a copy step does (held sectors kept)."""

    data: bytes
    fail: bool = False
    unreadable: tuple[tuple[int, int], ...] = ()  # source ranges it read as zeros

    def describe(self) -> str:
        return "copy"

    def run(self, ctx: Context) -> None:
        ctx.unreadable += self.unreadable
        now, later = ctx.split(0, [(0, len(self.data))])
        for start, length in later:
            ctx.keep(start, self.data[start : start + length])
        for start, length in now:
            ctx.put(start, self.data[start : start + length])
        if self.fail:
            raise CorruptData("Chunk abc does not match its hash.")


def pattern(size: int) -> bytes:
    return bytes((i * 7 + i // 512) % 251 for i in range(size))


@pytest.mark.parametrize("sector", [512, 4096])
def test_a_finished_run_writes_every_byte(tmp_path: Path, sector: int) -> None:
    disk = disk_file(tmp_path, 2 * MiB, sector)
    data = pattern(disk.size)
    execute(
        [MarkIncomplete(MARKER), CopyAll(data), WriteTableLast()],
        disk,
        progress=Progress(),
        cancel=None,
        workers=1,
        table="gpt",
    )
    assert Path(disk.node).read_bytes() == data
    assert restoremark.read_marker(disk.node) is None


@pytest.mark.parametrize("sector", [512, 4096])
def test_a_stopped_run_leaves_the_marker_and_no_table(tmp_path: Path, sector: int) -> None:
    disk = disk_file(tmp_path, 2 * MiB, sector)
    data = pattern(disk.size)
    with pytest.raises(CorruptData) as caught:
        execute(
            [MarkIncomplete(MARKER), CopyAll(data, fail=True), WriteTableLast()],
            disk,
            progress=Progress(),
            cancel=None,
            workers=1,
            table="gpt",
        )
    assert str(caught.value) == (
        f"Chunk abc does not match its hash. {disk.node} holds an incomplete restore of "
        "laptop and no valid partition table; run the restore again to finish it."
    )
    raw = Path(disk.node).read_bytes()
    assert raw[:sector] == restoremark.encode(MARKER, sector)
    assert raw[510:512] != b"\x55\xaa"
    assert raw[sector : 2 * sector] == bytes(sector)  # GPT header zeroed
    assert raw[-sector:] == bytes(sector)  # GPT backup header zeroed
    assert raw[2 * sector : -sector] == data[2 * sector : -sector]  # the rest was written
    assert restoremark.read_marker(disk.node) == MARKER


def test_a_disk_without_table_holds_back_its_first_mib(tmp_path: Path) -> None:
    disk = disk_file(tmp_path, 3 * MiB)
    data = pattern(disk.size)
    with pytest.raises(CorruptData):
        execute(
            [MarkIncomplete(MARKER), CopyAll(data, fail=True)],
            disk,
            progress=Progress(),
            cancel=None,
            workers=1,
            table=None,
        )
    raw = Path(disk.node).read_bytes()
    assert raw[512:MiB] == bytes(MiB - 512)  # no whole-disk filesystem superblock meanwhile
    assert raw[MiB:] == data[MiB:]


def test_a_failure_before_the_first_write_says_nothing_of_the_target(tmp_path: Path) -> None:
    disk = disk_file(tmp_path, MiB)

    @dataclass
    class Check(Step):
        writes = False

        def describe(self) -> str:
            return "check"

        def run(self, ctx: Context) -> None:
            raise CorruptData("Chunk abc is missing.")

    with pytest.raises(CorruptData) as caught:
        execute(
            [Check(), MarkIncomplete(MARKER)],
            disk,
            progress=Progress(),
            cancel=None,
            workers=1,
            table="gpt",
        )
    assert str(caught.value) == "Chunk abc is missing."
    assert Path(disk.node).read_bytes() == b"\xee" * MiB


def test_hold_ranges() -> None:
    assert hold_ranges("gpt", 10 * MiB, 4096) == [(0, 4096), (4096, 4096), (10 * MiB - 4096, 4096)]
    assert hold_ranges(None, 10 * MiB, 512) == [(0, MiB)]


def test_marker_round_trip_and_limits() -> None:
    long = restoremark.Marker("restore", "x" * 400, "/r" * 300, None, "2026-12-01 15:20 UTC")
    sector = restoremark.encode(long, 512)
    assert len(sector) == 512 and sector[510:] == b"\0\0"
    back = restoremark.decode(sector)
    assert back is not None and back.image is not None and back.image.startswith("xxx")
    assert back.describe().startswith("incomplete restore of xxx")
    clone = restoremark.Marker("clone", None, None, "/dev/sdb", "2026-12-01 15:20 UTC")
    assert restoremark.decode(restoremark.encode(clone, 4096)) == clone
    assert restoremark.decode(b"\0" * 512) is None
    assert restoremark.decode(restoremark.MAGIC + b"not json\n") is not None


def test_ctrl_c_inside_a_write_stays_a_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KeyboardInterrupt raised while a sector is being written (its traceback holds the
    buffer's view) reaches the caller as itself, not as an error closing the buffer."""
    disk = disk_file(tmp_path, MiB)

    def interrupted(fd: int, view: memoryview, offset: int) -> None:
        assert len(view) == 512  # the traceback keeps this frame, and the view, alive
        raise KeyboardInterrupt

    monkeypatch.setattr("appliance.jobs.writeplan.write_from", interrupted)
    with open(disk.node, "r+b") as handle:
        ctx = Context(disk, handle.fileno(), Progress(), None, None, [])
        with pytest.raises(KeyboardInterrupt):
            ctx.put(0, bytes(512))


def test_unreadable_source_ranges_are_returned_or_stop_the_job(tmp_path: Path) -> None:
    """A clone keeps what a dying disk gives and returns what it could not read; a job
    whose source is an image file stops at the first unreadable part, before the table is
    made valid, and the target stays marked."""
    disk = disk_file(tmp_path, 2 * MiB)
    data = pattern(disk.size)
    steps = [MarkIncomplete(MARKER), CopyAll(data, unreadable=((4096, 512),)), WriteTableLast()]
    got = execute(steps, disk, progress=Progress(), cancel=None, workers=1, table="gpt")
    assert got == [(4096, 512)]
    assert restoremark.read_marker(disk.node) is None
    with pytest.raises(CorruptData) as caught:
        execute(steps, disk, progress=Progress(), cancel=None, workers=1, table="gpt",
                unreadable_stops="The file pc.vhdx")  # fmt: skip
    assert str(caught.value).startswith(
        "The file pc.vhdx cannot be read whole: 1 unreadable part(s), the first at byte 4096. "
        f"{disk.node} holds an incomplete restore of laptop"
    )
    assert restoremark.read_marker(disk.node) == MARKER

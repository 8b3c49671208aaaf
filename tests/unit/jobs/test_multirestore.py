"""Restore onto several disks, its own pieces on plain files: one read of the windows feeds
every target at its own place (a larger target's partitions sit elsewhere), held-back
sectors are kept for last, a target whose writes fail is dropped without stopping the
others, and what each window lands on is forgotten once every target took it."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from appliance.disk.model import Disk
from appliance.io.fanout import fan_out
from appliance.io.pipeline import Placement
from appliance.jobs.multirestore import Lane, Places, RegionSink, RestoreVerdict
from appliance.jobs.writeplan import Context, hold_ranges
from appliance.progress import Progress

MiB = 1024 * 1024
WINDOWS = [os.urandom(4 * MiB), os.urandom(4 * MiB), os.urandom(MiB)]


def lane(tmp_path: Path, name: str, size: int, *, writable: bool = True) -> Lane:
    path = tmp_path / name
    path.write_bytes(b"\xee" * size)
    disk = Disk(name=name, node=str(path), size=size, logical_sector=512, physical_sector=512)
    fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
    ctx = Context(disk, fd, Progress(), None, None, hold_ranges("gpt", size, 512))
    plan: Any = SimpleNamespace(target=disk)  # RegionSink asks the plan for its node only
    return Lane(plan, [], RestoreVerdict(disk), ctx=ctx)


def feed(lanes: list[Lane], shifts: dict[str, int]) -> tuple[list[RegionSink], Places]:
    """The windows once through fan_out; window n lands at n * 4 MiB + the lane's shift."""
    places = Places(len(lanes))
    pending = list(WINDOWS)
    position = [0]

    def read(view: memoryview) -> int:
        if not pending:
            return 0
        data = pending.pop(0)
        view[: len(data)] = data
        where = {
            lane.node: Placement(
                0, position[0] + shifts[lane.node], len(data), ((0, len(data)),), "c"
            )
            for lane in lanes
        }
        places.add(position[0], where)
        position[0] += len(data)
        return len(data)

    sinks = [RegionSink(lane, places) for lane in lanes]
    result = fan_out(read, list(sinks), progress=Progress(), depth=1)
    assert not result.errors  # a sink keeps its own error and goes on taking blocks
    return sinks, places


def test_one_read_lands_at_each_targets_place_and_a_failing_one_is_dropped(
    tmp_path: Path,
) -> None:
    same = lane(tmp_path, "same", 12 * MiB)
    larger = lane(tmp_path, "larger", 16 * MiB)
    broken = lane(tmp_path, "broken", 12 * MiB, writable=False)
    lanes = [same, broken, larger]
    try:
        sinks, places = feed(lanes, {same.node: 0, larger.node: MiB, broken.node: 0})
    finally:
        for each in lanes:
            assert each.ctx is not None
            os.close(each.ctx.fd)
    stream = b"".join(WINDOWS)
    got = Path(same.node).read_bytes()
    assert got[1024 : len(stream)] == stream[1024:]  # LBA 0 and 1 held back for last
    assert got[:1024] == b"\xee" * 1024
    assert same.ctx is not None and bytes(same.ctx.held[0]) == stream[:512]
    assert bytes(same.ctx.held[512]) == stream[512:1024]
    assert Path(larger.node).read_bytes()[MiB : MiB + len(stream)] == stream
    assert larger.ctx is not None and not larger.ctx.held  # nothing of it on a held sector
    [ok1, bad, ok2] = sinks
    assert ok1.error is None and ok2.error is None and isinstance(bad.error, OSError)
    assert Path(broken.node).read_bytes() == b"\xee" * 12 * MiB
    assert not places._places  # every window's places forgotten once all took them
    broken.fail(bad.error)
    assert broken.verdict.state == "failed"
    assert broken.verdict.error is not None and broken.node in broken.verdict.error
    assert "incomplete restore" not in broken.verdict.error  # it had written nothing yet

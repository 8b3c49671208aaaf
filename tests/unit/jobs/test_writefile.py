"""The write job's own pieces on plain files: the marker zeroes only the head (not up to the
image's held-back last sector), one read fills every target with the held-back sectors put
last, all-zero windows are skipped only where the target reads zeros, and a rebuilt GPT's
sectors are what the target is hashed against."""

from __future__ import annotations

import io
import os
from pathlib import Path

import blake3

from appliance.disk import marker as restoremark
from appliance.disk.model import Disk
from appliance.io.fanout import fan_out
from appliance.jobs.imagefit import TargetPlan
from appliance.jobs.writefile import MarkWriteIncomplete, TargetSink, _open
from appliance.jobs.writeplan import WriteTableLast
from appliance.progress import Progress

MiB = 1024 * 1024
MARKER = restoremark.Marker("write", "stick.img", None, "/images/stick.img", "2026-12-01 18:00")
IMAGE = os.urandom(4 * MiB) + bytes(4 * MiB) + os.urandom(2 * MiB)  # the 2nd window: zeros


def disk_file(tmp_path: Path, name: str, size: int) -> Disk:
    path = tmp_path / name
    path.write_bytes(b"\xee" * size)  # what the target held before
    return Disk(name=name, node=str(path), size=size, logical_sector=512, physical_sector=512)


def test_the_marker_zeroes_the_head_only(tmp_path: Path) -> None:
    disk = disk_file(tmp_path, "t", 12 * MiB)
    ctx = _open(TargetPlan(disk, len(IMAGE)), Progress(), None)
    try:
        assert (len(IMAGE) - 512, 512) in ctx.holds  # the image's last sector is held back
        MarkWriteIncomplete(MARKER).run(ctx)
    finally:
        os.close(ctx.fd)
    data = Path(disk.node).read_bytes()
    assert restoremark.decode(data[:512]) is not None
    assert data[512:MiB] == bytes(MiB - 512)
    assert data[MiB : 12 * MiB - 512] == b"\xee" * (11 * MiB - 512)  # no 10 MiB of zeros
    assert data[-512:] == bytes(512)


def run_copy(tmp_path: Path, targets: list[tuple[TargetPlan, bool]]) -> dict[str, str]:
    ctxs = [_open(plan, Progress(), None) for plan, _ in targets]
    try:
        for ctx in ctxs:
            MarkWriteIncomplete(MARKER).run(ctx)
        sinks = [
            TargetSink(ctx, plan, zeroed) for ctx, (plan, zeroed) in zip(ctxs, targets, strict=True)
        ]
        # the table sectors are still held: what is on the targets now has no valid head
        result = fan_out(io.BytesIO(IMAGE).readinto, list(sinks), progress=Progress(), depth=1)
        assert not result.errors
        for ctx, (plan, _) in zip(ctxs, targets, strict=True):
            assert restoremark.read_marker(plan.disk.node) is not None
            for offset, data in plan.patch.items():
                ctx.keep(offset, data)
            WriteTableLast().run(ctx)
        return {s.name: s.hasher.hexdigest() for s in sinks if s.hasher}
    finally:
        for ctx in ctxs:
            os.close(ctx.fd)


def test_one_read_fills_every_target(tmp_path: Path) -> None:
    plain = disk_file(tmp_path, "plain", 12 * MiB)
    zeroed = disk_file(tmp_path, "zeroed", 12 * MiB)
    run_copy(
        tmp_path, [(TargetPlan(plain, len(IMAGE)), False), (TargetPlan(zeroed, len(IMAGE)), True)]
    )
    assert Path(plain.node).read_bytes()[: len(IMAGE)] == IMAGE
    got = Path(zeroed.node).read_bytes()
    # the zero window was skipped: a target that reads zeros after discard has them already
    assert got[4 * MiB : 8 * MiB] == b"\xee" * (4 * MiB)
    assert got[: 4 * MiB] == IMAGE[: 4 * MiB] and got[8 * MiB : len(IMAGE)] == IMAGE[8 * MiB :]


def test_a_patched_target_is_hashed_as_it_will_be(tmp_path: Path) -> None:
    short = disk_file(tmp_path, "short", 8 * MiB)
    patch = {512: b"\x01" * 512, 8 * MiB - 512: b"\x02" * 512}
    digests = run_copy(tmp_path, [(TargetPlan(short, 8 * MiB, "cut", patch), False)])
    expected = bytearray(IMAGE[: 8 * MiB])
    expected[512:1024] = patch[512]
    expected[-512:] = patch[8 * MiB - 512]
    assert Path(short.node).read_bytes() == bytes(expected)
    assert digests[short.node] == blake3.blake3(bytes(expected)).hexdigest()

"""copy_held reads the bytes meant for held-back sectors into a buffer of its own: a stop
(Ctrl-C) that lands inside that read must come out as the stop, not as the BufferError of a
buffer closed while a view of it was still held (CI saw a stopped restore exit 70)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.disk.model import Disk
from appliance.jobs import fitting
from appliance.jobs.writeplan import Context, hold_ranges
from appliance.progress import Progress


def test_a_stop_inside_the_held_read_stays_a_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source.img"
    source.write_bytes(b"\x11" * (1 << 20))
    target = tmp_path / "target.img"
    target.write_bytes(bytes(1 << 20))
    disk = Disk(name="t", node=str(target), size=1 << 20, logical_sector=512, physical_sector=512)
    src_fd = os.open(source, os.O_RDONLY)
    dst_fd = os.open(target, os.O_RDWR)

    def stopped(fd: int, view: memoryview, *_: object) -> None:
        held = view[:512]  # a view of the buffer alive in this frame when the stop lands
        held[:1] = b"\x00"
        raise KeyboardInterrupt

    monkeypatch.setattr(fitting, "read_into", stopped)
    ctx = Context(disk, dst_fd, Progress(), None, 1, hold_ranges("gpt", 1 << 20, 512))
    try:
        with pytest.raises(KeyboardInterrupt):
            fitting.copy_held(ctx, src_fd, 0, 0, [(0, 1 << 20)], 1 << 20)
    finally:
        os.close(src_fd)
        os.close(dst_fd)

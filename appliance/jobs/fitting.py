"""What restore and clone share once a layout must change: shrinking a partition's
filesystem on a copy-on-write view and copying the result, writing the fitted table, and
finishing the partitions on the target (swap recreated, filesystems grown, kernel told)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from appliance import fsresize
from appliance.blockio import flush, write_from
from appliance.cowview import CowView
from appliance.devices import partition_node, probe_disk, sync_partitions
from appliance.errors import ApplianceError, SafetyRefusal
from appliance.fit import FitPlan, SourcePart
from appliance.manifest import window_ranges
from appliance.model import Disk
from appliance.pipeline import WINDOW, Window, read_windows, spans
from appliance.progress import Progress
from appliance.tools import run
from appliance.usedmap import used_map


@dataclass(frozen=True)
class PartInfo:
    """What the finishing steps need to know of a partition that was copied."""

    number: int
    fstype: str | None
    label: str | None
    uuid: str | None
    method: str


def windows_for(ranges: list[tuple[int, int]], size: int, base: int) -> Iterator[Window]:
    by_window = window_ranges(ranges, WINDOW, size)
    for win in sorted(by_window):
        offset = win * WINDOW
        yield Window(0, win, base + offset, min(WINDOW, size - offset), tuple(by_window[win]))


def copy_ranges(src_fd: int, src_base: int, dst_fd: int, dst_base: int,
                ranges: list[tuple[int, int]], size: int, *, sector: int, progress: Progress,
                cancel: threading.Event | None, workers: int | None = None) -> None:
    """Copy the used `ranges` of a region from `src_fd` at src_base to `dst_fd` at dst_base."""
    shift = dst_base - src_base

    def work(win: Window, view: memoryview) -> None:
        for start, length in spans(win.used):
            write_from(dst_fd, view[start:start + length], win.offset + shift + start)

    read_windows(src_fd, windows_for(ranges, size, src_base), work, sector=sector,
                 progress=progress, cancel=cancel, workers=workers)


def check_min_size(plan: FitPlan, view_args: dict[str, Any]) -> None:
    """Refuse, before anything is written, a shrink below what the filesystem allows."""
    if plan.resize is None:
        return
    part = plan.part(plan.resize)
    if part.new_size >= part.old_size:
        return
    with CowView(part.old_size, **view_args) as view:
        smallest = fsresize.min_size(view.path, part.fstype)
    if smallest is not None and part.new_size < smallest:
        from appliance.model import human_size

        raise SafetyRefusal(f"The data does not fit: partition {part.number} ({part.fstype}) "
                            f"can shrink to {human_size(smallest)} at the least, and the "
                            f"target leaves it {human_size(part.new_size)}.")


def shrink_and_copy(plan: FitPlan, view_args: dict[str, Any], dst_fd: int, *, sector: int,
                    progress: Progress, cancel: threading.Event | None,
                    counted: int | None = None) -> None:
    """Shrink the resized partition's filesystem on a view, then copy it to the target.

    `counted` is what the job's progress total counted for this partition (the source's used
    bytes); the shrunk filesystem's used bytes replace it, so the total stays right."""
    assert plan.resize is not None
    part = plan.part(plan.resize)
    with CowView(part.old_size, **view_args) as view:
        progress.set_phase("resize", f"shrinking partition {part.number} ({part.fstype})")
        fsresize.shrink(view.path, part.fstype, part.new_size)
        umap = used_map(view.path, part.fstype, part.new_size, align=sector)
        if counted is not None:
            progress.adjust_total(sum(length for _, length in umap.ranges) - counted)
        progress.set_phase("copy", f"copying the shrunk partition {part.number}")
        fd = os.open(view.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            copy_ranges(fd, 0, dst_fd, part.new_start, list(umap.ranges), part.new_size,
                        sector=sector, progress=progress, cancel=cancel)
        finally:
            os.close(fd)


def source_parts(disk_parts: list[dict[str, Any]], fstypes: dict[int, str | None]
                 ) -> list[SourcePart]:
    return [SourcePart(int(p["number"]), str(p["kind"]), str(p["type"]), int(p["start"]),
                       int(p["size"]), fstypes.get(int(p["number"]))) for p in disk_parts]


def wipe_old_signatures(target: Disk) -> None:
    """Erase the signatures of what the target holds now: its partitions' and its table's."""
    for part in target.partitions:
        if part.kind != "extended" and part.node and os.path.exists(part.node):
            run(["wipefs", "--all", "--quiet", part.node])
    run(["wipefs", "--all", "--quiet", target.node])


def wipe_new_partitions(target: Disk) -> Disk:
    """Tell the kernel the new table, and wipe old signatures inside the new partitions."""
    fresh = probe_disk(target.node)
    sync_partitions(fresh)
    for part in fresh.partitions:
        if part.kind != "extended":
            run(["wipefs", "--all", "--quiet", partition_node(fresh, part.number)])
    return fresh


def finish(target_node: str, plan: FitPlan, parts: list[PartInfo], progress: Progress) -> None:
    """Recreate swap, grow what grew, and make the kernel's view of the target current."""
    fresh = probe_disk(target_node)
    sync_partitions(fresh)
    for info in parts:
        node = partition_node(fresh, info.number)
        if info.method == "swap":
            args = ["mkswap", "--force"]
            if info.uuid:
                args += ["--uuid", info.uuid]
            if info.label:
                args += ["--label", info.label]
            run([*args, node])
        elif plan.part(info.number).new_size > plan.part(info.number).old_size \
                and info.method == "partclone":
            progress.set_phase("resize", f"growing partition {info.number} ({info.fstype})")
            try:
                fsresize.grow(node, info.fstype)
            except ApplianceError as exc:
                raise type(exc)(f"The data was written, but growing partition {info.number} "
                                f"failed: {exc}") from exc
    fresh = probe_disk(target_node)
    sync_partitions(fresh)
    for node in [fresh.node, *(p.node for p in fresh.partitions if p.node)]:
        try:
            fd = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            flush(fd)
        finally:
            os.close(fd)

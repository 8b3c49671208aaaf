"""What restore and clone share once a layout must change: the steps that shrink a
partition's filesystem on a copy-on-write view and copy the result, recreate swap and grow
filesystems that got more room, and the checks before the first write."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from appliance.disk.blockio import aligned_buffer, close_buffer, read_into, write_from
from appliance.disk.model import Disk
from appliance.disk.probe import probe_disk
from appliance.errors import ApplianceError, Cancelled, CorruptData, SafetyRefusal
from appliance.fs import resize as fsresize
from appliance.fs.usedmap import used_map
from appliance.io.cowview import CowView
from appliance.io.pipeline import Window, read_windows, spans
from appliance.io.windows import windows
from appliance.jobs.writeplan import Context, RecreateSwap, Step
from appliance.plan.fit import (
    FIXED_TYPES,
    GROWABLE_FS,
    SHRINKABLE_FS,
    FitPlan,
    MiB,
    SourcePart,
    usable_end,
)
from appliance.progress import Phase, Progress
from appliance.repo.records import PartitionRecord
from appliance.units import human_size


@dataclass(frozen=True)
class PartInfo:
    """What the finishing steps need to know of a partition that was copied."""

    number: int
    fstype: str | None
    label: str | None
    uuid: str | None
    method: str


def copy_ranges(
    src_fd: int,
    src_base: int,
    dst_fd: int,
    dst_base: int,
    ranges: list[tuple[int, int]],
    size: int,
    *,
    sector: int,
    progress: Progress,
    cancel: threading.Event | None,
    workers: int | None = None,
    bad: list[tuple[int, int]] | None = None,
) -> None:
    """Copy the used `ranges` of a region from `src_fd` at src_base to `dst_fd` at dst_base;
    unreadable sectors are copied as zeros and added to `bad` (offsets in `src_fd`)."""
    shift = dst_base - src_base

    def work(win: Window, view: memoryview) -> None:
        for start, length in spans(win.used):
            write_from(dst_fd, view[start : start + length], win.offset + shift + start)

    read_windows(
        src_fd,
        windows(ranges, size, base=src_base),
        work,
        sector=sector,
        progress=progress,
        cancel=cancel,
        workers=workers,
        bad=bad,
    )


def needs_shrink(parts: list[SourcePart], table: str | None, target_size: int, sector: int) -> bool:
    """Whether the partitions end past what a target of this size can hold."""
    data = [p for p in parts if p.kind != "extended"]
    limit = usable_end(table, target_size, sector) // MiB * MiB
    return bool(data) and max(p.start + p.size for p in data) > limit


def with_min_sizes(
    parts: list[SourcePart], view_args: Callable[[SourcePart], dict[str, Any]], *, grow: int | None
) -> list[SourcePart]:
    """The partitions with the smallest size each shrinkable filesystem allows, read on a
    copy-on-write view of it (the named one only, when one was named with --grow), so
    that the fit refuses a shrink below it before anything is written."""
    out: list[SourcePart] = []
    for part in parts:
        if (
            part.kind != "extended"
            and part.fstype in SHRINKABLE_FS
            and part.type.lower() not in FIXED_TYPES
            and grow in (None, part.number)
        ):
            with CowView(part.size, **view_args(part)) as view, damage_said(view):
                part = replace(part, min_size=fsresize.min_size(view.path, part.fstype))
        out.append(part)
    return out


@dataclass
class ShrinkCopy(Step):
    """Shrink a partition's filesystem on a copy-on-write view of its source (the
    image or the source disk, never written), then copy the result to the target."""

    plan: FitPlan = field(repr=False)
    number: int
    view_args: dict[str, Any] = field(repr=False)
    counted: int = 0  # what the job's progress total counted for it: the source's used bytes

    def describe(self) -> str:
        part = self.plan.part(self.number)
        return (
            f"shrink partition {part.number} ({part.fstype}) to "
            f"{human_size(part.new_size)} on a copy-on-write view and copy it"
        )

    def run(self, ctx: Context) -> None:
        part = self.plan.part(self.number)
        lost: list[tuple[int, int]] = []  # unreadable, copied as zeros (offsets in the view)
        with CowView(part.old_size, **self.view_args) as view, damage_said(view):
            ctx.progress.set_phase(
                Phase.RESIZE, f"shrinking partition {part.number} ({part.fstype})"
            )
            fsresize.shrink(view.path, part.fstype, part.new_size)
            umap = used_map(view.path, part.fstype, part.new_size, align=ctx.sector)
            # the shrunk filesystem's used bytes are what is copied: the total follows them
            ctx.progress.adjust_total(umap.used_bytes - self.counted)
            ctx.progress.set_phase(Phase.COPY, f"copying the shrunk partition {part.number}")
            fd = os.open(view.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                copy_held(ctx, fd, 0, part.new_start, list(umap.ranges), part.new_size, lost)
            finally:
                os.close(fd)
        if lost and "device" not in self.view_args:  # an image reads whole or not at all
            raise CorruptData(
                f"{human_size(sum(n for _, n in lost))} of partition {part.number} could not "
                "be read from the image."
            )
        base = int(self.view_args.get("offset", 0))  # the source disk's unreadable sectors
        ctx.unreadable += [(base + start, length) for start, length in lost]


@contextlib.contextmanager
def damage_said(view: CowView) -> Iterator[None]:
    """Whatever fails on a view of a damaged image (its resize tool, a read) is said as the
    damage the view met, naming the chunk, instead of what the tool made of an I/O error;
    damage met by reads that did not fail (a copy reads it as zeros) is raised at the end."""
    try:
        yield
    except Cancelled:
        raise  # a stop stays a stop
    except (ApplianceError, OSError) as exc:
        view.raise_if_damaged(exc)
        raise
    view.raise_if_damaged()


def copy_held(
    ctx: Context,
    src_fd: int,
    src_base: int,
    dst_base: int,
    ranges: list[tuple[int, int]],
    size: int,
    bad: list[tuple[int, int]] | None = None,
) -> None:
    """copy_ranges onto the run's target, keeping what falls on held-back sectors for the
    last step (read from the source now: it is never written). Unreadable source sectors
    are copied as zeros and added to `bad` (offsets in `src_fd`; default: the run's
    `unreadable`, for a source disk read at its own offsets)."""
    bad = ctx.unreadable if bad is None else bad
    now, later = ctx.split(dst_base, ranges)
    for start, length in later:
        buf = aligned_buffer(length)
        try:
            with memoryview(buf) as view:  # released on every way out: close() needs that
                read_into(src_fd, view, src_base + start, ctx.sector, bad)
                ctx.keep(dst_base + start, bytes(view), count=True)
        finally:
            close_buffer(buf)
    copy_ranges(
        src_fd,
        src_base,
        ctx.fd,
        dst_base,
        now,
        size,
        sector=ctx.sector,
        progress=ctx.progress,
        cancel=ctx.cancel,
        workers=ctx.workers,
        bad=bad,
    )


@dataclass
class GrowFilesystem(Step):
    """Grow a filesystem whose partition grew; a filesystem copied whole (an unclean ext4,
    a dirty NTFS) is ours to repair first: it is the target's copy."""

    number: int
    fstype: str | None
    method: str

    def describe(self) -> str:
        how = " (copied whole: checked first)" if self.method == "raw" else ""
        return f"grow the {self.fstype} filesystem of partition {self.number}{how}"

    def run(self, ctx: Context) -> None:
        ctx.progress.set_phase(Phase.RESIZE, f"growing partition {self.number} ({self.fstype})")
        try:
            fsresize.grow(ctx.nodes[self.number], self.fstype)
        except ApplianceError as exc:
            raise type(exc)(
                f"The data was written, but growing partition {self.number} failed: {exc}"
            ) from exc


def finishing_steps(plan: FitPlan, parts: list[PartInfo]) -> list[Step]:
    """Recreate swap, grow what grew."""
    steps: list[Step] = []
    for info in parts:
        fitted = plan.part(info.number)
        if info.method == "swap":
            steps.append(RecreateSwap(info.number, info.uuid, info.label))
        elif (
            fitted.new_size > fitted.old_size
            and info.method in ("partclone", "raw")
            and info.fstype in GROWABLE_FS
        ):
            steps.append(GrowFilesystem(info.number, info.fstype, info.method))
    return steps


def kernel_parts(plan: FitPlan) -> tuple[tuple[int, int, int], ...]:
    """The partitions the kernel gets while the table is not valid yet (not the extended
    container: its kernel view is a stub that partx adds with the finished table)."""
    return tuple((p.number, p.new_start, p.new_size) for p in plan.parts if p.kind != "extended")


def recheck_target(planned: Disk) -> Disk:
    """The target probed again just before the first write: the same disk, the same size.
    Its table only: what follows reads no filesystem of the target's (the plan's probe named
    them to the user), and blkid on every old partition costs 10-25 ms each, uncached."""
    target = probe_disk(planned.node, filesystems=False)
    if target.devnum != planned.devnum or target.size != planned.size:
        raise SafetyRefusal("The target disk changed since the plan was made; start again.")
    return target


def source_parts(
    disk_parts: Iterable[PartitionRecord], fstypes: dict[int, str | None]
) -> list[SourcePart]:
    return [
        SourcePart(p.number, p.kind, str(p.type), p.start, p.size, fstypes.get(p.number))
        for p in disk_parts
    ]

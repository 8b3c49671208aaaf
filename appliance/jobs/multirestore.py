"""restore onto several disks at once: one image, each chunk read and checked once.

Planning is a single restore's, once per target (`plan_restores`): every target probed and
passed through the same guards, the same disk named twice (or under two names) refused,
and each target fitted on its own: disks of other sizes get other layouts, the chunks are
the image's either way; only where they land differs.

Running (`restore_many`) keeps every target on its own step list (appliance.jobs.restore's
`restore_steps`: marker first, table valid last) and moves the targets along them in step:
each target runs its own steps up to the next region of the image, then that region is
read once (appliance.io.fanout: one reader, a writer thread per target) and every target
still going writes each window at its own place. A target that fails (unplugged, an I/O
error, a short write) is dropped with a sentence and keeps its marker; the others go on.
What stops the image itself (a damaged chunk, the user) stops every target still going.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from appliance.disk.blockio import device_error, open_direct, write_from
from appliance.disk.marker import Marker
from appliance.disk.model import Disk
from appliance.disk.probe import probe_disk
from appliance.errors import ApplianceError, Cancelled, SafetyRefusal
from appliance.io.fanout import Block, fan_out
from appliance.io.pipeline import Placement, spans, workers_default
from appliance.jobs.fitting import recheck_target
from appliance.jobs.precheck import check_chunks_present, precheck
from appliance.jobs.restore import ImageRegion, RestorePlan, fit_for, restore_steps
from appliance.jobs.writeplan import (
    Context,
    MarkIncomplete,
    Step,
    WriteTableLast,
    hold_ranges,
    stop_sentence,
)
from appliance.plan.safety import check_target
from appliance.progress import Phase, Progress
from appliance.repo.image import load_image
from appliance.repo.imagelog import ImageLog
from appliance.repo.repository import Repository


def plan_restores(
    repo_path: str, image: str, targets: list[str], grow: int | None = None
) -> list[RestorePlan]:
    """One restore plan per target, each checked as a single restore's; nothing written."""
    repo = Repository.open(repo_path)
    loaded = load_image(repo, image)
    sector = loaded.manifest.disk.logical_sector
    plans: list[RestorePlan] = []
    for name in targets:
        disk = probe_disk(name)
        twice = next((p.target for p in plans if p.target.devnum == disk.devnum), None)
        if twice is not None:
            also = "" if twice.node == disk.node else f" (also named {twice.node})"
            raise SafetyRefusal(
                f"The target {disk.node}{also} is named twice; name each disk once."
            )
        check_target(disk, repo_path=repo.folder, sector=sector)
        plans.append(RestorePlan(loaded, disk, fit_for(loaded, disk, grow)))
    return plans


@dataclass
class RestoreVerdict:
    """What one target holds at the end: the image, or why not."""

    target: Disk
    state: str = "waiting"  # "restored", "failed", "stopped" (or "waiting": never reached)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "restored"

    def line(self) -> str:
        node = self.target.node
        if self.ok:
            return (
                f"{node}: restored and proven (every chunk re-hashed as it was read, "
                "the table made valid last)"
            )
        if self.state == "stopped":
            return f"{node}: STOPPED: {self.error}"
        return f"{node}: FAILED: {self.error}"

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target.node,
            "ok": self.ok,
            "state": self.state,
            "error": self.error,
        }


@dataclass
class ManyResult:
    verdicts: list[RestoreVerdict]
    stop: ApplianceError | None = None  # what stopped every target still going, if anything


@dataclass
class Lane:
    """One target's way through its steps."""

    plan: RestorePlan
    steps: list[Step]
    verdict: RestoreVerdict
    ctx: Context | None = None
    cursor: int = 0  # the next step to run
    wrote: bool = False
    valid: bool = False
    marker: Marker | None = field(default=None, repr=False)
    report: Callable[[RestoreVerdict], None] | None = field(default=None, repr=False)

    def settle(self, state: str, error: str | None = None) -> None:
        """This target's verdict, told to the caller as soon as it is known."""
        self.verdict.state, self.verdict.error = state, error
        if self.report is not None:
            self.report(self.verdict)

    @property
    def node(self) -> str:
        return self.plan.target.node

    @property
    def live(self) -> bool:
        return self.verdict.state == "waiting"

    def region_step(self, name: str) -> int | None:
        """Where this lane writes region `name` (None: it does not; a shrunk partition)."""
        return next(
            (
                n
                for n, step in enumerate(self.steps)
                if isinstance(step, ImageRegion) and step.region == name
            ),
            None,
        )

    def fail(self, exc: BaseException) -> None:
        text = str(device_error(self.node, exc, write=True) if isinstance(exc, OSError) else exc)
        if self.wrote and not self.valid and self.marker is not None:
            text = f"{text} {stop_sentence(self.plan.target, self.marker)}"
        self.settle("failed", text)

    def run_until(self, end: int, cancel: threading.Event | None) -> None:
        """Run this lane's steps before `end`; a failure drops only this lane."""
        assert self.ctx is not None
        while self.live and self.cursor < end:
            if cancel is not None and cancel.is_set() and not self.valid:
                raise Cancelled("Stopped by the user.")
            step = self.steps[self.cursor]
            self.wrote = self.wrote or step.writes
            try:
                step.run(self.ctx)
            except Cancelled:
                raise
            except (ApplianceError, OSError) as exc:
                self.fail(exc)
                return
            self.valid = self.valid or isinstance(step, WriteTableLast)
            self.cursor += 1


def restore_many(
    plans: list[RestorePlan],
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    verify_first: bool = False,
    report: Callable[[RestoreVerdict], None] | None = None,
) -> ManyResult:
    """Restore one image onto every plan's target; one verdict each. Refusals (a target that
    changed, an image that cannot be finished) are raised before the first write. `report`
    hears each target's verdict as soon as it is known (a dropped disk, mid-job)."""
    progress = progress or Progress()
    # the image's own checks once (its table, re-hashed if asked); each fit's chunks there
    precheck(plans[0], verify_first=verify_first, progress=progress, cancel=cancel)
    for plan in plans[1:]:
        check_chunks_present(plan)
    manifest = plans[0].image.manifest
    lanes: list[Lane] = []
    for plan in plans:  # the disks may have changed since the plan
        target = recheck_target(plan.target)
        check_target(target, repo_path=plan.image.repo.folder, sector=manifest.disk.logical_sector)
        steps = restore_steps(plan, target)
        marker = next(s.marker for s in steps if isinstance(s, MarkIncomplete))
        lanes.append(Lane(plan, steps, RestoreVerdict(target), marker=marker, report=report))
    progress.total = progress.done + _stream_bytes(lanes) + _shrink_bytes(plans)
    table = manifest.table.type if manifest.table else None
    try:
        for lane in lanes:
            target = lane.verdict.target
            try:
                fd = open_direct(target.node, write=True)
            except OSError as exc:  # nothing was written yet, to any target
                raise device_error(target.node, exc, write=True) from exc
            lane.ctx = Context(
                target,
                fd,
                progress,
                cancel,
                workers,
                hold_ranges(table, target.size, target.logical_sector),
            )
        stop = _run(lanes, progress, cancel, workers)
    finally:
        for lane in lanes:
            if lane.ctx is not None:
                os.close(lane.ctx.fd)
    log = ImageLog(plans[0].image.repo, manifest.name)
    for lane in lanes:
        if lane.verdict.ok:
            log.write(f"restored onto {lane.verdict.target.describe()} (one of {len(lanes)})")
    if stop is None:
        done = sum(lane.verdict.ok for lane in lanes)
        progress.set_phase(
            Phase.DONE, f"{manifest.name} restored onto {done} of {len(lanes)} disk(s)"
        )
    return ManyResult([lane.verdict for lane in lanes], stop)


def _run(
    lanes: list[Lane], progress: Progress, cancel: threading.Event | None, workers: int | None
) -> ApplianceError | None:
    """Move every lane along its steps, the image's regions in step; what stopped them all."""
    manifest = lanes[0].plan.image.manifest
    try:
        for number, region in enumerate(manifest.regions):
            group = []
            for lane in lanes:
                at = lane.region_step(region.name)
                if at is None or not lane.live:
                    continue
                lane.run_until(at, cancel)
                if lane.live:
                    group.append(lane)
            if group:
                _write_region(number, group, progress, cancel, workers)
            for lane in group:
                if lane.live:
                    lane.cursor += 1
        for lane in lanes:
            lane.run_until(len(lane.steps), cancel)
            if lane.live:
                lane.settle("restored")
    except KeyboardInterrupt:
        return _stop_all(lanes, Cancelled("Stopped by the user."))
    except ApplianceError as exc:
        return _stop_all(lanes, exc)
    return None


def _stop_all(lanes: list[Lane], exc: ApplianceError) -> ApplianceError:
    """Every lane still going is stopped by `exc`; its sentence names the incomplete ones."""
    left = [lane for lane in lanes if lane.live]
    for lane in left:
        lane.settle("stopped", str(exc))
    marked = [lane for lane in left if lane.wrote and not lane.valid]
    if not marked:
        return exc
    which = ", ".join(lane.node for lane in marked)
    image = lanes[0].plan.image.manifest.name
    holds = "holds" if len(marked) == 1 else "each hold"
    text = str(exc) if str(exc).endswith((".", "?", "!")) else f"{exc}."
    return type(exc)(
        f"{text} {which} {holds} an incomplete restore of {image} and no valid partition "
        "table; run the restore again to finish it."
    )


class RegionSink:
    """One target's writer for a region: each window at this target's place, held-back
    sectors kept for the last step. A write that fails is kept in `error` and the sink
    writes nothing more (it still takes every block, so the reader never waits on it)."""

    def __init__(self, lane: Lane, places: Places) -> None:
        assert lane.ctx is not None
        self.name = lane.node
        self.ctx = lane.ctx
        self.places = places
        self.error: BaseException | None = None

    def put(self, block: Block) -> None:
        place = self.places.take(block.offset, self.name)
        if place is None or self.error is not None:
            return
        try:
            now, later = self.ctx.split(place.offset, place.used)
            for start, length in later:
                self.ctx.keep(place.offset + start, block.view[start : start + length])
            for start, length in spans(now):
                write_from(self.ctx.fd, block.view[start : start + length], place.offset + start)
        except Exception as exc:  # this target only: the others go on
            self.error = exc


class Places:
    """Where each window read (by its offset in the stream) lands on each target; an entry
    goes once every sink has taken it, so memory stays bounded by the blocks in flight."""

    def __init__(self, sinks: int) -> None:
        self.sinks = sinks
        self._lock = threading.Lock()
        self._places: dict[int, tuple[dict[str, Placement], list[int]]] = {}

    def add(self, offset: int, where: dict[str, Placement]) -> None:
        with self._lock:
            self._places[offset] = (where, [self.sinks])

    def take(self, offset: int, name: str) -> Placement | None:
        with self._lock:
            where, left = self._places[offset]
            left[0] -= 1
            if not left[0]:
                del self._places[offset]
        return where.get(name)


def _windows(
    lanes: list[Lane], number: int
) -> Iterator[tuple[str | None, int, dict[str, Placement]]]:
    """Each window of region `number` some lane writes: its chunk, length, and places."""
    source = lanes[0].plan.source
    for win in source.regions[number].windows(number):
        places = {}
        for lane in lanes:
            place = lane.plan.placement(number, win)
            if place is not None:
                places[lane.node] = place
        if places:
            yield source.chunk(number, win.number), win.length, places


class _Ticks(Progress):
    """What fan_out reports to: its ticks reach the job's progress, its byte counts (whole
    windows) do not; the job counts the used bytes each window holds instead, as a single
    restore does."""

    def __init__(self, job: Progress) -> None:
        super().__init__(None)
        self.job = job

    def add(self, nbytes: int) -> None:
        pass

    def tick(self, force: bool = False) -> None:
        self.job.tick(force)


def _write_region(
    number: int,
    group: list[Lane],
    progress: Progress,
    cancel: threading.Event | None,
    workers: int | None,
) -> None:
    """Read region `number` of the image once, every window decoded and checked once (on a
    pool, in order), and hand it to every lane of `group`; a lane whose writes fail is
    dropped, a chunk that fails stops them all."""
    source = group[0].plan.source
    name = source.regions[number].what
    progress.set_phase(
        Phase.RESTORE, f"restoring {name} onto {', '.join(lane.node for lane in group)}"
    )
    pool = ThreadPoolExecutor(max_workers=workers or workers_default())
    ahead: deque[tuple[Future[bytes] | None, int, dict[str, Placement]]] = deque()
    windows = _windows(group, number)
    places = Places(len(group))
    position = [0]
    depth = 2 * (workers or workers_default()) + 2

    def load(chunk: str, length: int) -> bytes:
        return source.decode(number, chunk, length, source.fetch(chunk))

    def refill() -> None:
        while len(ahead) < depth:
            item = next(windows, None)
            if item is None:
                return
            chunk, length, where = item
            future = pool.submit(load, chunk, length) if chunk is not None else None
            ahead.append((future, length, where))

    def read(view: memoryview) -> int:
        refill()
        if not ahead:
            return 0
        future, length, where = ahead.popleft()
        if future is None:
            view[:length] = bytes(length)
        else:
            view[:length] = future.result()
        places.add(position[0], where)
        position[0] += length
        progress.add(max(place.used_bytes for place in where.values()))
        return length

    sinks = [RegionSink(lane, places) for lane in group]
    try:
        result = fan_out(read, list(sinks), progress=_Ticks(progress), cancel=cancel)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for lane, sink in zip(group, sinks, strict=True):
        failed = sink.error or result.errors.get(lane.node)
        if failed is not None:
            lane.fail(failed)


def _stream_bytes(lanes: list[Lane]) -> int:
    """What the job moves: each window's used bytes, once however many targets take it."""
    total = 0
    for number, region in enumerate(lanes[0].plan.image.manifest.regions):
        group = [lane for lane in lanes if lane.region_step(region.name) is not None]
        total += sum(
            max(place.used_bytes for place in where.values())
            for _, _, where in _windows(group, number)
        )
    return total


def _shrink_bytes(plans: list[RestorePlan]) -> int:
    return sum(r.used_bytes for plan in plans for r in plan.shrunk_regions())

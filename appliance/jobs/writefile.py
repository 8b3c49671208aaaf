"""write: a raw image file (.img .iso .bin, compressed, or in a .zip) onto one or more disks.

The ImageUSB / Etcher job. Plan first: the file (appliance.shelf.imagefile), every target
probed and passed through the same guards as a restore, and each target known to take the
image before anything is written: a target smaller than the image is accepted only when
what it cannot hold is zeros, or lies after the image's partitions (an MBR image).

Then the write plan's order (appliance.jobs.writeplan) on every target: mark it incomplete,
erase old signatures, discard its blocks and check they read back as zeros, then ONE read
of the file feeds every target at once (appliance.io.fanout), all-zero windows skipped on a
target that reads zeros after discard; the first MiB and the image's last sector are held
back and written last, after a flush. Last, every target is read back and its blake3 hash
compared with the file's, computed while it was read. Each target gets its own verdict.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

import blake3

from appliance.disk.blockio import (
    aligned_buffer,
    device_error,
    open_direct,
    read_into,
    write_from,
)
from appliance.disk.marker import Marker
from appliance.disk.model import Disk, human_size
from appliance.disk.probe import probe_disk
from appliance.disk.usage import disks_of_path
from appliance.errors import (
    ApplianceError,
    Cancelled,
    CorruptData,
    DeviceError,
    ImageError,
    SafetyRefusal,
)
from appliance.io.fanout import Block, fan_out
from appliance.io.windows import WINDOW
from appliance.jobs.fitting import recheck_target
from appliance.jobs.writeplan import (
    Context,
    Flush,
    MarkIncomplete,
    Step,
    TellKernel,
    WipeSignatures,
    WriteTableLast,
    now_utc,
)
from appliance.plan.safety import check_target
from appliance.progress import Progress
from appliance.shelf import imagefile
from appliance.shelf.imagefile import ImageFile
from appliance.tools import run

MiB = 1024 * 1024
BLKDISCARD = 0x1277  # _IO(0x12, 119)


@dataclass
class TargetPlan:
    """One target: the disk, the image bytes it gets, and why fewer than all are fine."""

    disk: Disk
    length: int
    short: str | None = None  # why a target smaller than the image is accepted

    @property
    def span(self) -> int:
        """Bytes written on the disk: the image's bytes padded to a whole sector."""
        sector = self.disk.logical_sector
        return min(-(-self.length // sector) * sector, self.disk.size)


@dataclass
class WriteFilePlan:
    image: ImageFile
    size: int
    targets: list[TargetPlan]

    def lines(self) -> list[str]:
        lines = [f"Write {self.image.name} ({self.image.describe()}, {human_size(self.size)})"]
        for target in self.targets:
            lines.append(f"onto {target.disk.describe()}")
            if target.short:
                lines.append(f"  only its first {target.length} bytes: {target.short}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "command": "write",
            "file": str(self.image.path),
            "member": self.image.member,
            "kind": self.image.kind,
            "bytes": self.size,
            "targets": [
                {"target": t.disk.node, "target_size": t.disk.size, "bytes": t.length}
                for t in self.targets
            ],
        }


@dataclass
class Verdict:
    """What one target holds at the end: verified, or why not."""

    target: TargetPlan
    error: str | None = None
    verified: bool = False
    skipped: int = 0  # all-zero bytes not written (the target reads zeros after discard)
    discarded: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.verified

    def line(self) -> str:
        node = self.target.disk.node
        if self.ok:
            what = (
                "the image"
                if self.target.short is None
                else f"its first {self.target.length} bytes"
            )
            return f"{node}: written and verified ({what}, blake3 matches the file)"
        return f"{node}: FAILED: {self.error}"

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target.disk.node,
            "ok": self.ok,
            "verified": self.verified,
            "bytes": self.target.length,
            "skipped_zero_bytes": self.skipped,
            "discarded": self.discarded,
            "error": self.error,
        }


def plan_write(path: str, targets: list[str], *, progress: Progress | None = None) -> WriteFilePlan:
    """The file and every target checked: nothing is written by a plan."""
    progress = progress or Progress()
    image = imagefile.probe(path)
    disks: list[Disk] = []
    for name in targets:
        disk = probe_disk(name)
        if any(d.devnum == disk.devnum for d in disks):
            raise SafetyRefusal(f"The target {disk.node} is named twice; name each disk once.")
        check_target(disk)
        if disk.name in disks_of_path(image.path):
            raise SafetyRefusal(
                f"The target {disk.describe()} holds the image file {image.path}; "
                "choose another disk."
            )
        disks.append(disk)
    size = image.size
    smallest = min(d.size for d in disks)
    scan = None
    if size is None or smallest < size:
        progress.set_phase("scan", f"reading {image.name} once to learn its size")
        scan = imagefile.scan(image, tick=progress.add, limit=smallest)
        size = scan.size
    if size == 0:
        raise ImageError(f"The image file {image.name} is empty.")
    plans = [_fit(image, size, disk, scan) for disk in disks]
    return WriteFilePlan(image, size, plans)


def _fit(image: ImageFile, size: int, disk: Disk, scan: imagefile.Scan | None) -> TargetPlan:
    if disk.size >= size:
        return TargetPlan(disk, size)
    assert scan is not None
    missing = size - disk.size
    if scan.data_end <= disk.size:
        return TargetPlan(disk, disk.size, f"the last {missing} bytes of the image are zeros")
    table, end = imagefile.partitions_end(image, size)
    if table == "dos" and end is not None and end <= disk.size:
        return TargetPlan(
            disk, disk.size, f"the image's partitions end at byte {end}; what follows is cut"
        )
    where = f"; its partitions end at byte {end}" if end is not None else ""
    gpt = "; a GPT image keeps its backup header at its end" if table == "gpt" else ""
    raise SafetyRefusal(
        f"The target {disk.describe()} is too small for {image.name}: the image needs "
        f"{human_size(size)} ({size} bytes) and its data runs to byte {scan.data_end}"
        f"{where}{gpt}."
    )


def marker_for(plan: WriteFilePlan) -> Marker:
    return Marker("write", plan.image.name, None, str(plan.image.path), now_utc())


@dataclass
class Discard(Step):
    """BLKDISCARD the image's span after the first MiB, then check that it reads back as
    zeros (bmaptool's reasoning): only then are all-zero windows skipped on this target."""

    zeroed: dict[str, bool] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        return "discard the target's blocks and check that they read back as zeros"

    def run(self, ctx: Context) -> None:
        ctx.progress.set_phase("table", f"discarding the blocks of {ctx.target.node}")
        self.zeroed[ctx.target.node] = discard_reads_zeros(ctx.fd, ctx.target)


def discard_reads_zeros(fd: int, disk: Disk) -> bool:
    start, end = MiB, disk.size
    if end <= start:
        return False
    try:
        fcntl.ioctl(fd, BLKDISCARD, struct.pack("QQ", start, end - start))
    except OSError:
        return False  # not supported (or a file in a unit test): write the zeros
    buf = aligned_buffer(WINDOW)
    view = memoryview(buf)
    try:
        samples = {start, start + (end - start) // 2 // MiB * MiB, max(start, end - WINDOW)}
        for offset in sorted(samples):
            with view[: min(WINDOW, end - offset)] as piece:
                read_into(fd, piece, offset, disk.logical_sector, [])
                if piece.tobytes().count(0) != len(piece):
                    return False
        return True
    finally:
        view.release()
        buf.close()


@dataclass
class TellKernelAnyTable(TellKernel):
    """An image's table may be one libparted refuses (an isohybrid ISO's partition starts at
    sector 0, "recursive"): the kernel then gets what partx reads, and that is no error."""

    def run(self, ctx: Context) -> None:
        try:
            super().run(ctx)
        except ApplianceError:
            run(["partx", "--delete", ctx.target.node], check=False)
            run(["partx", "--add", ctx.target.node], check=False)


@dataclass
class CopyImage(Step):
    """Every target at once from one read of the file (run by `write_file`, not per target)."""

    plan: WriteFilePlan = field(repr=False)

    def describe(self) -> str:
        return (
            f"write {self.plan.image.name} to every target at once, reading it once "
            "(all-zero windows skipped where the discard left zeros)"
        )


@dataclass
class ReadBack(Step):
    writes: ClassVar[bool] = False
    plan: WriteFilePlan = field(repr=False)

    def describe(self) -> str:
        return "read every target back and compare it with the file's blake3 hash"


def write_steps(plan: WriteFilePlan, zeroed: dict[str, bool] | None = None) -> list[Step]:
    """The steps every target goes through, in order (printed by --dry-run)."""
    return [
        MarkIncomplete(marker_for(plan)),
        WipeSignatures(()),
        Discard(zeroed if zeroed is not None else {}),
        CopyImage(plan),
        Flush(),
        WriteTableLast(),
        TellKernelAnyTable(),
        ReadBack(plan),
    ]


class TargetSink:
    """One target's writer: the image's bytes at their place, held-back sectors kept."""

    def __init__(self, ctx: Context, target: TargetPlan, zeroed: bool) -> None:
        self.name = target.disk.node
        self.ctx = ctx
        self.span = target.span
        self.zeroed = zeroed
        self.skipped = 0

    def put(self, block: Block) -> None:
        end = min(block.offset + block.padded, self.span)
        if end <= block.offset:
            return
        length = end - block.offset
        if block.zero and self.zeroed:
            self.skipped += length
            return
        now, later = self.ctx.split(block.offset, [(0, length)])
        for start, size in later:
            self.ctx.keep(block.offset + start, block.view[start : start + size])
        for start, size in now:
            write_from(self.ctx.fd, block.view[start : start + size], block.offset + start)


def _open(target: TargetPlan, progress: Progress, cancel: threading.Event | None) -> Context:
    disk = target.disk
    sector = disk.logical_sector
    holds = [(0, min(MiB, target.span))]
    if target.span > MiB:
        holds.append((target.span - sector, sector))
    return Context(disk, open_direct(disk.node, write=True), progress, cancel, None, holds)


def stop_sentence(plan: WriteFilePlan, nodes: list[str]) -> str:
    which = ", ".join(nodes)
    return (
        f"{which} {'holds' if len(nodes) == 1 else 'each hold'} an incomplete write of "
        f"{plan.image.name} and no valid partition table; write it again."
    )


def write_file(
    plan: WriteFilePlan,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> list[Verdict]:
    """Run the plan on every target; one verdict each. An error that stops every target
    (a damaged file, the user) is raised with a sentence naming the incomplete targets."""
    progress = progress or Progress()
    for target in plan.targets:  # the disks may have changed since the plan
        target.disk = recheck_target(target.disk)
        check_target(target.disk)
    progress.total = plan.size + sum(t.length for t in plan.targets)
    zeroed: dict[str, bool] = {}
    steps = write_steps(plan, zeroed)
    verdicts = {t.disk.node: Verdict(t) for t in plan.targets}
    ctxs: dict[str, Context] = {}
    wrote: list[str] = []  # targets written to: a stop leaves them incomplete
    try:
        for target in plan.targets:
            ctxs[target.disk.node] = _open(target, progress, cancel)
        digests: dict[int, str] = {}
        for step in steps:
            if cancel is not None and cancel.is_set():
                raise Cancelled("Stopped by the user.")
            live = [n for n in ctxs if verdicts[n].error is None]
            if step.writes:
                wrote.extend(n for n in live if n not in wrote)
            if isinstance(step, CopyImage):
                digests = _copy(plan, {n: ctxs[n] for n in live}, zeroed, verdicts, cancel)
            elif isinstance(step, ReadBack):
                _read_back(plan, {n: ctxs[n] for n in live}, digests, verdicts, cancel)
            else:
                for node in live:
                    _per_target(step, ctxs[node], verdicts[node], plan)
    except KeyboardInterrupt:
        if not wrote:
            raise
        raise Cancelled(f"Stopped by the user. {stop_sentence(plan, wrote)}") from None
    except Cancelled as exc:
        if not wrote:
            raise
        raise Cancelled(f"{exc} {stop_sentence(plan, wrote)}") from exc
    finally:
        for ctx in ctxs.values():
            os.close(ctx.fd)
    progress.set_phase("done", f"{plan.image.name} written onto {len(plan.targets)} disk(s)")
    return list(verdicts.values())


def _per_target(step: Step, ctx: Context, verdict: Verdict, plan: WriteFilePlan) -> None:
    if isinstance(step, WipeSignatures):
        step = WipeSignatures(tuple(p.node for p in ctx.target.partitions if p.kind != "extended"))
    try:
        step.run(ctx)
    except (ApplianceError, OSError) as exc:
        verdict.error = _failed(exc, ctx.target, plan, step.writes)


def _failed(exc: BaseException, disk: Disk, plan: WriteFilePlan, wrote: bool) -> str:
    text = str(device_error(disk.node, exc, write=True) if isinstance(exc, OSError) else exc)
    return f"{text} {stop_sentence(plan, [disk.node])}" if wrote else text


def _copy(
    plan: WriteFilePlan,
    ctxs: dict[str, Context],
    zeroed: dict[str, bool],
    verdicts: dict[str, Verdict],
    cancel: threading.Event | None,
) -> dict[int, str]:
    """One read of the file into every live target; the file's hash and prefix hashes."""
    progress = next(iter(ctxs.values())).progress if ctxs else Progress()
    progress.set_phase("write", f"writing {plan.image.name} onto {len(ctxs)} disk(s)")
    sinks = [TargetSink(ctxs[n], verdicts[n].target, zeroed.get(n, False)) for n in ctxs]
    image = plan.image
    position = [0]

    def read(view: memoryview) -> int:
        got = imagefile.read_full(stream, view)
        position[0] += got
        if position[0] > plan.size:
            raise ImageError(
                f"The image file {image.name} grew while it was written (more than "
                f"{plan.size} bytes); write it again"
            )
        return got

    cuts = {t.length for t in plan.targets if t.length < plan.size}
    with imagefile.open_image(image) as stream:
        try:
            result = fan_out(read, list(sinks), progress=progress, cancel=cancel, cuts=cuts)
        except (ApplianceError, OSError, EOFError, ValueError) as exc:
            if isinstance(exc, Cancelled):
                raise
            error = imagefile.damaged(image, position[0], exc)
            stop = stop_sentence(plan, list(ctxs))
            raise type(error)(f"{str(error).rstrip('.')}; {stop}") from exc
    if result.size != plan.size:
        raise CorruptData(
            f"The image file {image.name} ended after {result.size} of its {plan.size} "
            f"bytes; {stop_sentence(plan, list(ctxs))}"
        )
    for sink in sinks:
        verdicts[sink.name].skipped = sink.skipped
        verdicts[sink.name].discarded = sink.zeroed
        if sink.name in result.errors:
            failed = result.errors[sink.name]
            verdicts[sink.name].error = _failed(failed, sink.ctx.target, plan, True)
    return {plan.size: result.digest, **result.prefixes}


def _read_back(
    plan: WriteFilePlan,
    ctxs: dict[str, Context],
    digests: dict[int, str],
    verdicts: dict[str, Verdict],
    cancel: threading.Event | None,
) -> None:
    """Every live target read back (O_DIRECT) in parallel and hashed."""
    progress = next(iter(ctxs.values())).progress if ctxs else Progress()
    progress.set_phase("verify", f"reading back {len(ctxs)} disk(s)")

    def check(node: str) -> None:
        target = verdicts[node].target
        try:
            got = _hash_target(ctxs[node], target.length, progress, cancel)
        except (ApplianceError, OSError) as exc:
            verdicts[node].error = _failed(exc, target.disk, plan, False)
            return
        if got == digests[target.length]:
            verdicts[node].verified = True
        else:
            verdicts[node].error = (
                f"what {node} holds now differs from the image (its blake3 hash does not "
                "match the file's); the disk may be failing or fake"
            )

    threads = [threading.Thread(target=check, args=(node,), daemon=True) for node in ctxs]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.1)
            progress.tick()


def _hash_target(
    ctx: Context, length: int, progress: Progress, cancel: threading.Event | None
) -> str:
    hasher = blake3.blake3()
    buf = aligned_buffer(WINDOW)
    view = memoryview(buf)
    try:
        offset = 0
        while offset < length:
            if cancel is not None and cancel.is_set():
                raise Cancelled("Stopped by the user.")
            want = min(WINDOW, length - offset)
            span = min(WINDOW, -(-want // ctx.sector) * ctx.sector)
            bad: list[tuple[int, int]] = []
            read_into(ctx.fd, view[:span], offset, ctx.sector, bad)
            if bad:
                raise DeviceError(f"The disk {ctx.target.node} has unreadable sectors.")
            hasher.update(view[:want])
            offset += want
            progress.add(want)
    finally:
        view.release()
        buf.close()
    return hasher.hexdigest()

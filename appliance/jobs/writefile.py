"""write: a raw image file (.img .iso .bin, compressed, or in a .zip) onto one or more disks.

The ImageUSB / Etcher job. Plan first (appliance.jobs.imagefit): the file, every target
probed and passed through the same guards as a restore, and each target known to take the
image before anything is written.

Then the write plan's order (appliance.jobs.writeplan) on every target: mark it incomplete,
erase old signatures, discard its blocks and check they read back as zeros, then ONE read
of the file feeds every target at once (appliance.io.fanout), all-zero windows skipped on a
target that reads zeros after discard; the first MiB and the image's last sector are held
back and written last, after a flush (with a GPT rebuilt for a smaller target, if any).
Last, every target is read back and its blake3 hash compared with the file's, computed while
it was read. Each target gets its own verdict; a target that fails stops only itself.
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
    close_buffer,
    device_error,
    open_direct,
    read_into,
    write_from,
)
from appliance.disk.marker import Marker
from appliance.disk.model import Disk
from appliance.errors import (
    ApplianceError,
    Cancelled,
    CorruptData,
    DeviceError,
    ImageError,
)
from appliance.io.fanout import Block, fan_out
from appliance.io.windows import WINDOW
from appliance.jobs.fitting import recheck_target
from appliance.jobs.imagefit import TargetPlan, WriteFilePlan
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
from appliance.progress import Phase, Progress
from appliance.shelf import imagefile
from appliance.tools import run

MiB = 1024 * 1024
BLKDISCARD = 0x1277  # _IO(0x12, 119)


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


def marker_for(plan: WriteFilePlan) -> Marker:
    return Marker("write", plan.image.name, None, str(plan.image.path), now_utc())


@dataclass
class MarkWriteIncomplete(MarkIncomplete):
    """writeplan's first write; it zeroes up to the end of the held-back head, so it sees
    only the holds in the first MiB (the image's last sector, a rebuilt GPT's backup are
    held back too, far from there)."""

    def run(self, ctx: Context) -> None:
        holds = ctx.holds
        ctx.holds = [(start, length) for start, length in holds if start + length <= MiB]
        try:
            super().run(ctx)
        finally:
            ctx.holds = holds


@dataclass
class Discard(Step):
    """BLKDISCARD the target after its first MiB (the marker stays), then check that it
    reads back as zeros (bmaptool's reasoning): only then are all-zero windows skipped on
    this target; elsewhere they are written."""

    zeroed: dict[str, bool] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        return "discard the target's blocks and check that they read back as zeros"

    def run(self, ctx: Context) -> None:
        ctx.progress.set_phase(Phase.TABLE, f"discarding the blocks of {ctx.target.node}")
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
        close_buffer(buf)


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
class FitGpt(Step):
    """A target smaller than a GPT image: its rebuilt GPT sectors replace the image's (held
    back, so they are written last like every table sector)."""

    plan: WriteFilePlan = field(repr=False)

    def describe(self) -> str:
        return "put the GPT rebuilt for the target's size in place of the image's (held back)"

    def run(self, ctx: Context) -> None:
        target = next(t for t in self.plan.targets if t.disk.node == ctx.target.node)
        for offset, data in sorted(target.patch.items()):
            ctx.keep(offset, data)


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
        MarkWriteIncomplete(marker_for(plan)),
        WipeSignatures(()),
        Discard(zeroed if zeroed is not None else {}),
        CopyImage(plan),
        *([FitGpt(plan)] if any(t.patch for t in plan.targets) else []),
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
        self.length = target.length
        self.zeroed = zeroed
        self.skipped = 0
        self.patch = target.patch
        # what this target must hold, hashed here when it differs from the image's bytes
        self.hasher = blake3.blake3() if self.patch else None

    def put(self, block: Block) -> None:
        if self.hasher is not None:
            self._hash(block)
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

    def _hash(self, block: Block) -> None:
        assert self.hasher is not None
        lo = block.offset
        data = block.view[: max(0, min(block.length, self.length - lo))]
        hi = lo + len(data)
        hits = [(o, d) for o, d in self.patch.items() if o < hi and o + len(d) > lo]
        if not hits:
            self.hasher.update(data)
            return
        patched = bytearray(data)
        for offset, sectors in hits:
            start, stop = max(offset, lo), min(offset + len(sectors), hi)
            patched[start - lo : stop - lo] = sectors[start - offset : stop - offset]
        self.hasher.update(patched)


def _open(target: TargetPlan, progress: Progress, cancel: threading.Event | None) -> Context:
    disk = target.disk
    sector = disk.logical_sector
    holds = [(0, min(MiB, target.span))]
    if target.span > MiB:
        holds.append((target.span - sector, sector))
    holds += [(offset, len(data)) for offset, data in target.patch.items() if offset >= MiB]
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
    progress.total = progress.done + plan.size + sum(t.length for t in plan.targets)
    zeroed: dict[str, bool] = {}
    steps = write_steps(plan, zeroed)
    verdicts = {t.disk.node: Verdict(t) for t in plan.targets}
    ctxs: dict[str, Context] = {}
    wrote: list[str] = []  # targets written to: a stop leaves them incomplete
    try:
        for target in plan.targets:
            ctxs[target.disk.node] = _open(target, progress, cancel)
        digests: dict[str, str] = {}
        for step in steps:
            if cancel is not None and cancel.is_set():
                raise Cancelled("Stopped by the user.")
            live = [n for n in ctxs if verdicts[n].error is None]
            if not live:
                break  # every target has its verdict already
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
    progress.set_phase(Phase.DONE, f"{plan.image.name} written onto {len(plan.targets)} disk(s)")
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
) -> dict[str, str]:
    """One read of the file into every live target; the hash each target must show."""
    progress = next(iter(ctxs.values())).progress if ctxs else Progress()
    progress.set_phase(Phase.WRITE, f"writing {plan.image.name} onto {len(ctxs)} disk(s)")
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
        except imagefile.STREAM_ERRORS as exc:
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
    hashes = {plan.size: result.digest, **result.prefixes}
    return {
        sink.name: sink.hasher.hexdigest() if sink.hasher else hashes[sink.length] for sink in sinks
    }


def _read_back(
    plan: WriteFilePlan,
    ctxs: dict[str, Context],
    digests: dict[str, str],
    verdicts: dict[str, Verdict],
    cancel: threading.Event | None,
) -> None:
    """Every live target read back (O_DIRECT) in parallel and hashed."""
    progress = next(iter(ctxs.values())).progress if ctxs else Progress()
    progress.set_phase(Phase.VERIFY, f"reading back {len(ctxs)} disk(s)")

    def check(node: str) -> None:
        target = verdicts[node].target
        try:
            got = _hash_target(ctxs[node], target.length, progress, cancel)
        except (ApplianceError, OSError) as exc:
            verdicts[node].error = _failed(exc, target.disk, plan, False)
            return
        if got == digests[node]:
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
        close_buffer(buf)
    return hasher.hexdigest()

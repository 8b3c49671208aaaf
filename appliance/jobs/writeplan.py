"""One write plan for restore and clone: a list of printable steps run by one executor.

Restore and clone each build their list (their own planning: an image or a source disk) and
run it here. The order keeps a target that stops halfway from looking like a good disk:

1. mark the target incomplete (sector 0 becomes a marker, the GPT headers are zeroed);
2. wipe old signatures, write the boot area and the table's other sectors, tell the kernel
   the new partitions with BLKPG (addpart: no valid table is on the disk yet);
3. copy the partitions, shrink, recreate swap, grow, flush;
4. make the table valid LAST: the held-back sectors (GPT backup header, then LBA 1, then
   LBA 0 over the marker), each followed by a flush; then the kernel reads the table.

Every byte a copy step would put on a held-back sector (LBA 0, LBA 1, the last sector; the
first MiB of a disk without a table) is kept in memory instead and written by the last step.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from appliance.disk import marker as restoremark
from appliance.disk.blockio import (
    aligned_buffer,
    close_buffer,
    device_error,
    flush,
    open_direct,
    write_from,
)
from appliance.disk.model import Disk
from appliance.disk.probe import probe_disk, set_kernel_partitions, sync_partitions
from appliance.errors import ApplianceError, Cancelled, CorruptData, DeviceError
from appliance.progress import Phase, Progress
from appliance.tools import run

MiB = 1024 * 1024


@dataclass
class Context:
    """What the steps of one run share: the open target, progress, and held-back sectors."""

    target: Disk
    fd: int
    progress: Progress
    cancel: threading.Event | None
    workers: int | None
    holds: list[tuple[int, int]]  # (offset, length) held back
    held: dict[int, bytearray] = field(default_factory=dict)  # sector offset -> its bytes
    nodes: dict[int, str] = field(default_factory=dict)  # partition -> node
    # source disk byte ranges that could not be read and were copied as zeros (a clone)
    unreadable: list[tuple[int, int]] = field(default_factory=list)

    @property
    def sector(self) -> int:
        return self.target.logical_sector

    def keep(self, offset: int, data: bytes | memoryview, *, count: bool = False) -> None:
        """Keep bytes meant for held-back sectors, to be written by the last step; `count`:
        they are used data of the job's total (progress counts them now)."""
        if count:
            self.progress.add(len(data))
        sector = self.sector
        pos = 0
        while pos < len(data):
            base = (offset + pos) // sector * sector
            inner = offset + pos - base
            step = min(sector - inner, len(data) - pos)
            block = self.held.setdefault(base, bytearray(sector))
            block[inner : inner + step] = data[pos : pos + step]
            pos += step

    def split(
        self, offset: int, ranges: Iterable[tuple[int, int]]
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Ranges (relative to `offset` on the target) cut into those to write now and those
        that fall on held-back sectors."""
        now: list[tuple[int, int]] = []
        later: list[tuple[int, int]] = []
        for start, length in ranges:
            pieces = [(offset + start, length)]
            for h_start, h_len in self.holds:
                rest = []
                for p_start, p_len in pieces:
                    lo, hi = max(p_start, h_start), min(p_start + p_len, h_start + h_len)
                    if lo >= hi:
                        rest.append((p_start, p_len))
                        continue
                    later.append((lo - offset, hi - lo))
                    if lo > p_start:
                        rest.append((p_start, lo - p_start))
                    if hi < p_start + p_len:
                        rest.append((hi, p_start + p_len - hi))
                pieces = rest
            now.extend((s - offset, n) for s, n in pieces)
        return sorted(now), sorted(later)

    def put(self, offset: int, data: bytes) -> None:
        """Write a few sectors now (through the O_DIRECT descriptor, from an aligned buffer)."""
        buf = aligned_buffer(max(len(data), 4096))
        try:  # views released on every way out (a Ctrl-C inside the write too): then close
            with memoryview(buf) as view, view[: len(data)] as piece:
                piece[:] = data
                write_from(self.fd, piece, offset)
        finally:
            close_buffer(buf)


def hold_ranges(table: str | None, size: int, sector: int) -> list[tuple[int, int]]:
    """What is written last: LBA 0, LBA 1 and the last sector; the first MiB without a table."""
    if table is None:
        return [(0, min(MiB, size))]
    return [(0, sector), (sector, sector), (size - sector, sector)]


class Step:
    """One action on the target. `writes`: whether it changes the target's bytes."""

    writes: ClassVar[bool] = True

    def describe(self) -> str:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        return {"step": type(self).__name__, "text": self.describe(), "writes": self.writes}

    def run(self, ctx: Context) -> None:
        raise NotImplementedError


@dataclass
class MarkIncomplete(Step):
    """The first write: sector 0 becomes the marker; LBA 1 (the first MiB without a table)
    and the last sector are zeroed, so no valid table is left on the disk."""

    marker: restoremark.Marker

    def describe(self) -> str:
        what = self.marker.job if self.marker.job in ("restore", "write") else "clone"
        return f"mark the target as an incomplete {what} (no valid table until the end)"

    def run(self, ctx: Context) -> None:
        ctx.progress.set_phase(Phase.TABLE, f"marking {ctx.target.node} as being written")
        sector, size = ctx.sector, ctx.target.size
        end = max(
            [2 * sector] + [start + length for start, length in ctx.holds if start < size - sector]
        )
        # The backup header first: until the next write the disk is still its old self.
        # Then the marker and the zeros after it in ONE write, so that no moment shows the
        # marker next to a GPT header or a whole-disk filesystem's superblock.
        ctx.put(size - sector, bytes(sector))
        flush(ctx.fd)
        ctx.put(0, restoremark.encode(self.marker, sector) + bytes(end - sector))
        flush(ctx.fd)


@dataclass
class WipeSignatures(Step):
    """Erase what the target holds now: its old partitions' and its own signatures."""

    partitions: tuple[str, ...]

    def describe(self) -> str:
        return f"erase old signatures on the target ({len(self.partitions)} old partitions)"

    def run(self, ctx: Context) -> None:
        ctx.progress.set_phase(Phase.TABLE, f"wiping old signatures on {ctx.target.node}")
        # one wipefs for all of them: it takes several devices (a process each cost 5-10 ms)
        nodes = [node for node in self.partitions if node and os.path.exists(node)]
        run(["wipefs", "--all", "--quiet", *nodes, ctx.target.node])


@dataclass
class TableSectors(Step):
    """A fitted table: sfdisk writes it on a scratch file of the target's size; its sectors
    are copied here, LBA 0 (with the source's boot code), LBA 1 and the last one held back."""

    label: str
    sectors: Any = field(repr=False)  # callable () -> dict[offset, bytes]

    def describe(self) -> str:
        return f"write the fitted {self.label} table's entries (its headers held back)"

    def run(self, ctx: Context) -> None:
        ctx.progress.set_phase(Phase.TABLE, f"writing the partition table of {ctx.target.node}")
        table: dict[int, bytes] = self.sectors()
        boot = bytes(ctx.held.get(0, bytearray(ctx.sector))[:440])
        for offset, data in sorted(table.items()):
            now, later = ctx.split(offset, [(0, len(data))])
            for start, length in now:
                ctx.put(offset + start, data[start : start + length])
            for start, length in later:
                ctx.keep(offset + start, data[start : start + length])
        if 0 in table:
            ctx.keep(0, boot)
        flush(ctx.fd)


@dataclass
class AddPartitions(Step):
    """Tell the kernel the new partitions with BLKPG (no valid table is on the disk yet), then
    erase old signatures inside them."""

    parts: tuple[tuple[int, int, int], ...]  # (number, start, size) in bytes

    def describe(self) -> str:
        numbers = ", ".join(str(number) for number, _, _ in self.parts) or "none"
        return f"tell the kernel the new partitions ({numbers}) without a table"

    def run(self, ctx: Context) -> None:
        ctx.nodes = set_kernel_partitions(ctx.target, list(self.parts))
        if ctx.nodes:
            run(["wipefs", "--all", "--quiet", *ctx.nodes.values()])


@dataclass
class RecreateSwap(Step):
    number: int
    uuid: str | None
    label: str | None

    def describe(self) -> str:
        return f"recreate swap on partition {self.number}"

    def run(self, ctx: Context) -> None:
        args = ["mkswap", "--force"]
        if self.uuid:
            args += ["--uuid", self.uuid]
        if self.label:
            args += ["--label", self.label]
        run([*args, ctx.nodes[self.number]])


@dataclass
class Flush(Step):
    writes: ClassVar[bool] = False

    def describe(self) -> str:
        return "flush the target's caches"

    def run(self, ctx: Context) -> None:
        flush(ctx.fd)


@dataclass
class WriteTableLast(Step):
    """Make the table valid: the held sectors (GPT backup header), LBA 1, then LBA 0."""

    def describe(self) -> str:
        return "make the table valid: backup header, LBA 1, then LBA 0 over the marker"

    def run(self, ctx: Context) -> None:
        ctx.progress.set_phase(Phase.TABLE, f"making the table of {ctx.target.node} valid")
        sector = ctx.sector
        ctx.held.setdefault(0, bytearray(sector))  # the marker always goes
        flush(ctx.fd)
        for offset in sorted(o for o in ctx.held if o >= 2 * sector):
            ctx.put(offset, bytes(ctx.held[offset]))
        flush(ctx.fd)
        for offset in (sector, 0):
            if offset in ctx.held:
                ctx.put(offset, bytes(ctx.held[offset]))
                flush(ctx.fd)


@dataclass
class TellKernel(Step):
    writes: ClassVar[bool] = False

    def describe(self) -> str:
        return "tell the kernel the finished table"

    def run(self, ctx: Context) -> None:
        fresh = probe_disk(ctx.target.node, filesystems=False)  # the table is all it needs
        sync_partitions(fresh)
        for node in [p.node for p in fresh.partitions if p.node]:
            try:
                fd = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                flush(fd)
            finally:
                os.close(fd)


def now_utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def stop_sentence(target: Disk, marker: restoremark.Marker) -> str:
    """What a job that stopped after its first write leaves, and how to finish it."""
    if marker.job == "clone":
        return (
            f"{target.node} holds an incomplete clone of {marker.source} and no valid "
            "partition table; run the clone again to finish it."
        )
    return (
        f"{target.node} holds an incomplete restore of {marker.image} and no valid "
        "partition table; run the restore again to finish it."
    )


def describe_steps(steps: Iterable[Step]) -> list[str]:
    return [f"{number}. {step.describe()}" for number, step in enumerate(steps, 1)]


def steps_json(steps: Iterable[Step]) -> list[dict[str, Any]]:
    return [step.to_json() for step in steps]


def execute(
    steps: list[Step],
    target: Disk,
    *,
    progress: Progress,
    cancel: threading.Event | None,
    workers: int | None,
    table: str | None,
    unreadable_stops: str | None = None,
) -> list[tuple[int, int]]:
    """Run the steps on `target`. A stop after the first write re-raises the same error
    class with a sentence that says the target holds an incomplete restore or clone.
    Returns the source disk's byte ranges that could not be read (copied as zeros: a clone
    keeps what a dying disk still gives). `unreadable_stops`: what the source is (an image
    file, whose every byte must read), and the job stops at the first step that met such a
    range, before the table is made valid."""
    marker = next((s.marker for s in steps if isinstance(s, MarkIncomplete)), None)
    fd = open_direct(target.node, write=True)
    ctx = Context(
        target,
        fd,
        progress,
        cancel,
        workers,
        hold_ranges(table, target.size, target.logical_sector),
    )
    wrote = valid = False
    try:
        for step in steps:
            if cancel is not None and cancel.is_set() and not valid:
                raise Cancelled("Stopped by the user.")
            wrote = wrote or step.writes
            step.run(ctx)
            if unreadable_stops and ctx.unreadable and not valid:
                first = min(ctx.unreadable)
                raise CorruptData(
                    f"{unreadable_stops} cannot be read whole: {len(ctx.unreadable)} unreadable "
                    f"part(s), the first at byte {first[0]}."
                )
            valid = valid or isinstance(step, WriteTableLast)
        return sorted(ctx.unreadable)
    except KeyboardInterrupt:
        if not wrote or valid or marker is None:
            raise
        raise Cancelled(f"Stopped by the user. {stop_sentence(target, marker)}") from None
    except ApplianceError as exc:
        if not wrote or valid or marker is None:
            raise
        raise type(exc)(f"{exc} {stop_sentence(target, marker)}") from exc
    except OSError as exc:  # the target failed under us: unplugged, I/O error
        error = device_error(target.node, exc, write=True)
        if not wrote or valid or marker is None:
            raise error from exc
        raise DeviceError(f"{error} {stop_sentence(target, marker)}") from exc
    finally:
        os.close(fd)

"""Fitting a saved layout onto a disk of another size: which partition grows or shrinks, and
where every partition lands. Pure planning on data; nothing here touches a disk.

Rules: partitions keep their order, numbers, types, GUIDs and names. One partition changes
size: the one named with --grow, else the last data partition that is not of a fixed-size
kind (EFI system, Microsoft reserved, Windows recovery, BIOS boot, swap). Partitions after it
move by the same amount, a multiple of 1 MiB, so aligned partitions stay aligned. A larger
target grows that partition to fill the disk; a smaller one shrinks it only as much as needed.
When that partition alone cannot shrink enough (its filesystem's minimum is known) and none
was named, further shrinkable partitions shrink too, largest first, each no smaller than its
filesystem's minimum; every partition moves by the sum of the changes before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.errors import ImageError, SafetyRefusal
from appliance.fs.kinds import GROWABLE, SHRINKABLE
from appliance.units import human_size

MiB = 1024 * 1024
FIXED_TYPES = {
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",  # EFI system
    "e3c9e316-0b5c-4db8-817d-f92df00215ae",  # Microsoft reserved
    "de94bba4-06d1-4d40-a16a-bfd50179d6ac",  # Windows recovery
    "21686148-6449-6e6f-744e-656564454649",  # BIOS boot
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f",  # Linux swap
    "ef",
    "27",
    "82",
    "12",  # MBR: EFI, recovery, swap, diagnostics
}
GROWABLE_FS = GROWABLE  # what each filesystem can do: appliance/fs/kinds.py
SHRINKABLE_FS = SHRINKABLE


@dataclass(frozen=True)
class FitPart:
    number: int
    kind: str  # primary, extended, logical
    type: str
    fstype: str | None
    old_start: int  # bytes
    old_size: int
    new_start: int
    new_size: int

    @property
    def moved(self) -> bool:
        return self.new_start != self.old_start

    @property
    def resized(self) -> bool:
        return self.new_size != self.old_size


@dataclass
class FitPlan:
    source_size: int
    target_size: int
    sector: int
    table: str | None
    parts: list[FitPart] = field(default_factory=list)
    resize: int | None = None  # number of the partition that changes size
    shrunk: list[int] = field(default_factory=list)  # partitions that shrink (maybe several)
    identity: bool = True  # same layout: copy the table bytes as they are

    def part(self, number: int) -> FitPart:
        return next(p for p in self.parts if p.number == number)

    def new_start(self, number: int) -> int:
        return self.part(number).new_start

    def describe(self) -> list[str]:
        lines = []
        for p in self.parts:
            what = f"partition {p.number} ({p.fstype or p.kind})"
            if p.moved or p.resized:
                lines.append(
                    f"{what}: {human_size(p.old_size)} at {p.old_start} -> "
                    f"{human_size(p.new_size)} at {p.new_start}"
                    + (
                        " (filesystem grows)"
                        if p.new_size > p.old_size and p.fstype in GROWABLE_FS
                        else ""
                    )
                    + (" (filesystem shrinks)" if p.new_size < p.old_size else "")
                )
            else:
                lines.append(f"{what}: {human_size(p.old_size)} at {p.old_start}, unchanged")
        return lines

    def to_json(self) -> dict[str, object]:
        return {
            "source_size": self.source_size,
            "target_size": self.target_size,
            "sector": self.sector,
            "resize": self.resize,
            "shrunk": self.shrunk,
            "identity": self.identity,
            "partitions": [
                {
                    "number": p.number,
                    "kind": p.kind,
                    "fstype": p.fstype,
                    "old_start": p.old_start,
                    "old_size": p.old_size,
                    "new_start": p.new_start,
                    "new_size": p.new_size,
                }
                for p in self.parts
            ],
        }


@dataclass(frozen=True)
class SourcePart:
    number: int
    kind: str
    type: str
    start: int
    size: int
    fstype: str | None
    min_size: int | None = None  # smallest the filesystem can shrink to (bytes), if known


def usable_end(table: str | None, disk_size: int, sector: int) -> int:
    """First byte after the last byte a partition may use on a disk of this size."""
    if table == "gpt":
        tail = (16384 + sector - 1) // sector + 1  # backup entries + backup header
        return disk_size - tail * sector
    return disk_size


def fit(
    parts: list[SourcePart],
    *,
    table: str | None,
    source_size: int,
    target_size: int,
    sector: int,
    grow: int | None = None,
) -> FitPlan:
    plan = FitPlan(source_size, target_size, sector, table)
    data = sorted((p for p in parts if p.kind != "extended"), key=lambda p: p.start)
    if grow is not None and grow not in {p.number for p in data}:
        raise ImageError(
            f"There is no data partition {grow} to grow (partitions: "
            f"{', '.join(str(p.number) for p in data) or 'none'})."
        )
    if (target_size == source_size and grow is None) or not data:
        if target_size < source_size:
            raise SafetyRefusal(
                f"The target ({human_size(target_size)}) is smaller than the "
                f"source ({human_size(source_size)}) and holds no partitions."
            )
        plan.parts = [
            FitPart(p.number, p.kind, p.type, p.fstype, p.start, p.size, p.start, p.size)
            for p in parts
        ]
        plan.identity = target_size == source_size
        return plan
    plan.identity = False
    align = MiB
    limit = usable_end(table, target_size, sector) // align * align
    last_end = max(p.start + p.size for p in data)
    if grow is not None:
        chosen = next(p for p in data if p.number == grow)
    else:
        candidates = [p for p in data if p.type.lower() not in FIXED_TYPES]
        chosen = candidates[-1] if candidates else data[-1]
    if target_size > source_size:
        delta = (limit - last_end) // align * align
    elif last_end <= limit:
        delta = 0 if grow is None else (limit - last_end) // align * align
    else:
        delta = -(((last_end - limit) + align - 1) // align * align)
    changes = {chosen.number: delta}
    if delta < 0:
        changes = {n: -v for n, v in _shrinks(data, chosen, -delta, grow is None).items()}
        for p in data:
            if p.number in changes:
                _check_shrink(p, p.size + changes[p.number], target_size)
    plan.shrunk = sorted(n for n, change in changes.items() if change < 0)
    plan.resize = (
        chosen.number if changes.get(chosen.number) else (plan.shrunk[0] if plan.shrunk else None)
    )

    def shift(start: int) -> int:
        """How far a partition that starts at `start` moves: the changes before it."""
        return sum(changes.get(p.number, 0) for p in data if p.start + p.size <= start)

    placed: dict[int, FitPart] = {}
    for p in data:
        placed[p.number] = FitPart(
            p.number,
            p.kind,
            p.type,
            p.fstype,
            p.start,
            p.size,
            p.start + shift(p.start),
            p.size + changes.get(p.number, 0),
        )
    for ext in (p for p in parts if p.kind == "extended"):
        # The container follows its logical partitions and keeps its slack after the last
        # one, as far as the disk allows.
        inner = [placed[p.number] for p in data if p.kind == "logical"]
        start = ext.start + shift(ext.start)
        end = ext.start + ext.size + shift(ext.start)
        if inner:
            last_old = max(p.old_start + p.old_size for p in inner)
            last_new = max(p.new_start + p.new_size for p in inner)
            end = min(last_new + (ext.start + ext.size - last_old), limit)
            end = max(end, last_new)
        placed[ext.number] = FitPart(
            ext.number, ext.kind, ext.type, ext.fstype, ext.start, ext.size, start, end - start
        )
    plan.parts = [placed[p.number] for p in parts]
    return plan


def _room(part: SourcePart) -> int | None:
    """How much a partition can give up, in whole MiB; None while its minimum is unknown."""
    if part.fstype not in SHRINKABLE_FS or part.type.lower() in FIXED_TYPES:
        return 0
    if part.min_size is None:
        return None
    return max(0, (part.size - part.min_size) // MiB * MiB)


def _shrinks(data: list[SourcePart], chosen: SourcePart, need: int, spread: bool) -> dict[int, int]:
    """Bytes each partition gives up so that `need` bytes are freed: the chosen one first,
    then (when it alone is not enough and no partition was named) the other shrinkable
    partitions, largest first, none below its filesystem's minimum."""
    room = _room(chosen)
    if not spread or room is None or room >= need:
        return {chosen.number: need}
    out = {chosen.number: room} if room else {}
    rest = need - room
    others = sorted(
        (p for p in data if p.number != chosen.number and _room(p)),
        key=lambda p: (-p.size, p.number),
    )
    for part in others:
        take = min(_room(part) or 0, rest)
        out[part.number] = take
        rest -= take
        if rest == 0:
            return out
    return {chosen.number: need}  # it does not fit: the chosen partition's refusal says why


def _check_shrink(part: SourcePart, new_size: int, target_size: int) -> None:
    where = f"partition {part.number} ({part.fstype or 'unformatted'})"
    if part.fstype == "xfs":
        raise SafetyRefusal(
            f"The target ({human_size(target_size)}) is too small and {where} "
            "holds XFS, which cannot shrink; use a larger target."
        )
    if part.fstype not in SHRINKABLE_FS:
        raise SafetyRefusal(
            f"The target ({human_size(target_size)}) is too small and {where} "
            "cannot be shrunk; use a larger target."
        )
    if new_size <= 0 or (part.min_size is not None and new_size < part.min_size):
        need = (part.min_size or part.size) - new_size
        raise SafetyRefusal(
            f"The data does not fit: {where} can shrink to "
            f"{human_size(part.min_size or part.size)} at the least, and the "
            f"target is {human_size(max(need, 0))} too small."
        )

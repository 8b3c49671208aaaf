"""What the screens hand each other: plans that will write a disk, and jobs ready to run.

No textual here: a job is a function of (Progress, cancel Event) that returns a summary, plus
the sentences that say what a stop leaves behind. The real ones are built in backend.py; the
tests build fake ones.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from appliance.disk.model import Disk
from appliance.jobs.plantext import PlanText
from appliance.progress import Progress, writes_target


@dataclass(frozen=True)
class WritePlan:
    """A restore or clone, planned and checked by the engine; nothing written yet."""

    kind: str  # "restore", "clone" or "write" (an image file; one plan per target)
    target: Disk  # the disk that will be erased
    text: PlanText  # the engine's lines: what is written, what the target holds, the layout
    total: int  # bytes that will be written
    engine_plan: object = None  # RestorePlan / ClonePlan, handed back to run it
    repo: str = ""  # restore: the repository and image, for a verify after
    image: str = ""
    verify_first: bool = False  # restore: re-hash every chunk before the first write
    # (the image was never verified whole)

    @property
    def source(self) -> str:
        """What is copied onto the target, in words."""
        return self.text.source


@dataclass(frozen=True)
class VerifyRequest:
    repo: str
    image: str
    disk: str | None = None  # compare this disk's data with the image


@dataclass(frozen=True)
class JobSummary:
    lines: tuple[str, ...]  # what was done: bytes, time, rate
    verified: str  # a sentence: verified, or how to verify
    follow_up: VerifyRequest | None = None


JobRunner = Callable[[Progress, threading.Event], JobSummary]


@dataclass
class JobSpec:
    kind: str  # save, restore, clone, verify, write, copy (files out of an image)
    title: str  # one line: what the job does
    run: JobRunner
    target: Disk | None = None  # the disk the job overwrites (restore, clone)
    image: str | None = None  # save: the image being written
    targets: tuple[Disk, ...] = ()  # write, restore onto several: the disks it overwrites

    def stopped(self, phases_seen: set[str]) -> str:
        """What a stop (cancel, error, unplugged disk) leaves behind, in one sentence."""
        wrote = any(writes_target(phase) for phase in phases_seen)
        if self.kind in ("write", "restore") and self.targets:
            names = ", ".join(d.node for d in self.targets)
            if not wrote:
                return f"Nothing was written: {names} are as they were."
            again = "write the image" if self.kind == "write" else "restore the image"
            return (
                f"{names} hold an incomplete {self.kind} (no valid partition table) and will "
                f"not start as they are; {again} again to finish them."
            )
        if self.kind in ("restore", "clone") and self.target is not None:
            if not wrote:
                return f"Nothing was written: {self.target.describe()} is as it was."
            return (
                f"{self.target.describe()} was partly overwritten and will not start as it "
                f"is; run the {self.kind} again to finish it."
            )
        if self.kind == "cast":
            return (
                "Nothing was changed here; a PC that was receiving keeps an incomplete "
                "restore until it receives an image again."
            )
        if self.kind == "save":
            return (
                f"The image {self.image} is incomplete: it is never offered for restore; "
                "save again with the same name to resume it."
            )
        if self.kind == "copy":
            return (
                "Nothing on any disk was replaced: the files copied before the stop stay "
                "where they were copied; the files being copied were removed."
            )
        return "Nothing was changed; the check did not finish."


NAME_OK = re.compile(r"[^A-Za-z0-9._+-]+")


def default_image_name(disk: Disk, today: str, label: str | None = None) -> str:
    """laptop-2024-05-01, or Samsung-SSD-870-3A1B-2024-05-01 from model and serial."""
    words = [label.split(" (")[0] if label else disk.model or disk.name]
    if disk.serial and not label:
        words.append(disk.serial[-4:])
    words.append(today)
    name = NAME_OK.sub("-", "-".join(words)).strip("-._+")
    name = re.sub(r"-{2,}", "-", name)
    return (name or f"disk-{today}")[:100]


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or name-2, name-3... when an image of that name exists."""
    if name not in taken:
        return name
    number = 2
    while f"{name}-{number}" in taken:
        number += 1
    return f"{name}-{number}"

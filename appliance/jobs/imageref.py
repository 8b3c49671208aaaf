"""What an image mount names: the image (ImageRef) and its partitions (PartitionChoice), and
the choice of the partition to mount; shared by jobs/imagemount.py and jobs/mountsteps.py."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import Cancelled, UsageError

START_SECONDS = 120.0  # a view of a slow web server or bucket may take a while to answer
STOP_SECONDS = 60.0


@dataclass(frozen=True)
class ImageRef:
    """What the user named on the command line."""

    repo: str | None = None  # --repo (folder, ssh://, smb://, nfs://, http(s)://, s3://)
    image: str | None = None  # --image (our images, and Clonezilla folder names)
    file: str | None = None  # --file: a VM disk or raw image file (.img .qcow2 .vhdx ...)

    def describe(self) -> str:
        if self.file is not None:
            return f"the disk file {Path(self.file).name}"
        return f"image {self.image}"


@dataclass(frozen=True)
class PartitionChoice:
    number: int
    fstype: str | None
    size: int
    label: str | None
    mountable: bool
    reason: str | None  # one sentence when not mountable

    def describe(self) -> str:
        what = self.fstype or "no filesystem"
        return f"partition {self.number} ({what}{', ' + self.label if self.label else ''})"


def choose_from(
    ref: ImageRef, choices: list[PartitionChoice], number: int | None
) -> PartitionChoice:
    """The partition to mount: `number`, or the only mountable one; one sentence when there
    is no such partition, it cannot be mounted, or there are several to choose from."""
    if number is not None:
        for choice in choices:
            if choice.number == number:
                if not choice.mountable:
                    raise UsageError(
                        f"Partition {number} of {ref.describe()} cannot be mounted: {choice.reason}"
                    )
                return choice
        known = ", ".join(str(c.number) for c in choices) or "none"
        raise UsageError(f"{ref.describe()} has no partition {number} (partitions: {known}).")
    mountable = [c for c in choices if c.mountable]
    if len(mountable) == 1:
        return mountable[0]
    if not mountable:
        reasons = {c.reason for c in choices}
        if len(reasons) == 1 and choices:  # one reason for all: a Clonezilla image
            raise UsageError(
                f"{ref.describe()[0].upper()}{ref.describe()[1:]} cannot be mounted: "
                f"{reasons.pop()}"
            )
        raise UsageError(f"{ref.describe()} has no partition whose files can be read.")
    listed = "; ".join(c.describe() for c in mountable)
    raise UsageError(
        f"{ref.describe()[0].upper()}{ref.describe()[1:]} has several partitions to mount "
        f"({listed}); choose one with --partition N."
    )


def raise_if_stopped(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Cancelled("Stopped by the user.")

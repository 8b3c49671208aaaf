"""The incomplete-restore marker: what sector 0 of a target holds while a restore or clone runs.

The first write of a restore or clone replaces sector 0 (LBA 0, one logical sector) with a
magic line and a small JSON record, and zeroes LBA 1 (the GPT primary header) and the last
logical sector (the GPT backup header). Sector 0 then has no 0x55AA signature, so no firmware,
operating system or partition tool sees a valid table. The job's very last write replaces the
marker with the real sector 0. A disk that still holds the marker is an interrupted job; the
tool names it, and a new restore onto it is how the user finishes it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from appliance.disk.blockio import aligned_buffer, close_buffer, open_direct
from appliance.errors import ApplianceError

MAGIC = b"APPLIANCE INCOMPLETE RESTORE\n"
LIMIT = 500  # bytes of marker text: stays clear of the MBR signature at 510 on any sector size
FIELD_LIMIT = 120


@dataclass(frozen=True)
class Marker:
    """Who was writing the disk: a restore of an image, or a clone of a disk."""

    job: str  # "restore", "clone" or "write" (an image file)
    image: str | None  # image name (restore)
    repo: str | None  # repository path (restore)
    source: str | None  # source disk (clone; the image's source disk for a restore)
    started: str  # UTC, "2026-12-01 15:20:11 UTC"

    def describe(self) -> str:
        """One line for `disks` and the TUI."""
        if self.job == "clone":
            what = f"incomplete clone of {self.source or 'another disk'}"
        elif self.job == "write":
            what = f"incomplete write of the image file {self.image or 'an image file'}"
        else:
            what = f"incomplete restore of {self.image or 'an image'}"
        return f"{what}, started {self.started}"

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "image": self.image,
            "repo": self.repo,
            "source": self.source,
            "started": self.started,
        }


def _short(value: str | None) -> str | None:
    if value is None or len(value) <= FIELD_LIMIT:
        return value
    return value[: FIELD_LIMIT - 3] + "..."


def encode(marker: Marker, sector: int) -> bytes:
    """The full logical sector that marks a disk as an interrupted restore or clone."""
    record = {key: _short(value) for key, value in marker.to_json().items()}
    text = MAGIC + json.dumps(record, separators=(",", ":")).encode() + b"\n"
    if len(text) > LIMIT:
        record["repo"] = None
        text = MAGIC + json.dumps(record, separators=(",", ":")).encode() + b"\n"
    return text[:LIMIT].ljust(sector, b"\0")


def decode(data: bytes) -> Marker | None:
    """The marker in the first bytes of a disk, or None when there is none."""
    if not data.startswith(MAGIC):
        return None
    line = data[len(MAGIC) : LIMIT].split(b"\n", 1)[0]
    try:
        record = json.loads(line.decode("utf-8", "replace"))
    except ValueError:
        record = {}
    if not isinstance(record, dict):
        record = {}

    def text(key: str) -> str | None:
        value = record.get(key)
        return str(value) if value is not None else None

    return Marker(
        job=text("job") or "restore",
        image=text("image"),
        repo=text("repo"),
        source=text("source"),
        started=text("started") or "at an unknown time",
    )


def read_marker(node: str) -> Marker | None:
    """The marker on disk `node`, None when it has none or cannot be read. Read with O_DIRECT
    where the device allows it: what is on the disk, not what a cache remembers of it."""
    try:
        fd = open_direct(node)
    except ApplianceError:
        return None
    buf = aligned_buffer(4096)
    try:
        with memoryview(buf) as view:  # released on every way out: close() needs that
            try:
                got = os.preadv(fd, [view], 0)
            except OSError:
                got = -1
            data = bytes(view[:got]) if got >= 0 else None
        if data is None:
            try:  # a device whose logical sector is larger than a page
                return decode(os.pread(fd, LIMIT, 0))
            except OSError:
                return None
        return decode(data)
    finally:
        close_buffer(buf)
        os.close(fd)

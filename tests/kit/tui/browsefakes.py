"""The fake engine's side of Browse: a plain folder stands for the mounted partition, another
for the destination's filesystem; the copy itself is the real engine's (copy_files)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from appliance.disk.model import Disk
from appliance.jobs.extract import Choice, ImageWhere, copy_files
from appliance.progress import Progress
from appliance.repo.mount import RepoMount, Volume
from kit.tui.fakes import LAPTOP, STICK, FakeBackend, FakeMount
from tui.browseengine import copy_summary, copy_title
from tui.jobspec import JobSpec, JobSummary


@dataclass(frozen=True)
class FakeChoice:
    number: int
    fstype: str | None
    size: int
    label: str | None
    mountable: bool
    reason: str | None


CHOICES = [
    FakeChoice(1, "vfat", 100 * 2**20, "SYSTEM", True, None),
    FakeChoice(2, None, 16 * 2**20, None, False, "it holds no filesystem"),
    FakeChoice(3, "ntfs", 499_000 * 2**20, "Windows", True, None),
]


def partition_tree(root: Path) -> Path:
    """What partition 3 holds: a Documents folder, a file beside it, a fifo."""
    (root / "Documents").mkdir(parents=True)
    (root / "Documents/report.odt").write_bytes(b"r" * 300_000)
    (root / "Documents/notes.txt").write_text("notes\n")
    (root / "pagefile.sys").write_bytes(b"p" * 1000)
    os.mkfifo(root / "pipe")
    return root


class RecordingMount(FakeMount):
    def __init__(self, node: str, where: Path, log: list[str]) -> None:
        super().__init__(node, where, True, True, "ext4")
        self.log = log

    def unmount(self) -> None:
        self.log.append(self.node)
        super().unmount()


@dataclass
class BrowseBackend(FakeBackend):
    tree: Path = Path("/nonexistent")
    dest_root: Path = Path("/nonexistent")
    opened: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    dest_unmounted: list[str] = field(default_factory=list)

    def image_partitions(self, repo: str, image: str) -> list[Choice]:
        return list(CHOICES)

    def open_partition(self, repo: str, image: str, number: int) -> AbstractContextManager[Path]:
        @contextmanager
        def held() -> Iterator[Path]:
            self.opened.append(number)
            try:
                yield self.tree
            finally:
                self.closed.append(number)

        return held()

    def copy_destinations(self, disks: Sequence[Disk], avoid: set[str]) -> list[Volume]:
        found = [
            Volume("/dev/sdb1", "sdb", "new SSD", 1, 10**12, "ext4", "DATA", None),
            Volume("/dev/sdc1", "sdc", STICK.describe(), 1, 10**10, "exfat", "IMAGES", None),
            Volume("/dev/sda3", "sda", LAPTOP.describe(), 3, 10**11, "ntfs", "Windows", None),
        ]
        return [v for v in found if v.disk not in avoid]

    def mount_destination(self, node: str) -> RepoMount:
        self.mounted.append(node)
        return RecordingMount(node, self.dest_root, self.dest_unmounted)

    def copy_job(self, root: Path, names: Sequence[str], dest: Path, source: ImageWhere) -> JobSpec:
        def run(progress: Progress, cancel: threading.Event) -> JobSummary:
            self.ran.append("copy")
            return copy_summary(copy_files(root, names, dest, progress=progress, cancel=cancel))

        return JobSpec("copy", copy_title(len(names), source, dest), run)

"""The engine's side of Browse (getting files back out of an image): the image's partitions,
one mounted read-only, the filesystems files may be copied onto, and the copy job. A part of
tui/backend.py's EngineBackend, kept apart to keep each module small."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from appliance.disk.bootmedium import boot_disks
from appliance.disk.model import Disk
from appliance.jobs.copyout import CopyReport
from appliance.jobs.extract import Choice, ImageWhere, where_of
from appliance.progress import Progress
from appliance.repo.mount import RepoMount, Volume, mount_volume, volumes
from tui.jobspec import JobSpec, JobSummary


class BrowseEngine:
    # -- Browse: files out of an image -------------------------------------------------
    def image_partitions(self, repo: str, image: str) -> list[Choice]:
        from appliance.jobs.extract import partitions

        return partitions(where_of(repo, image))

    def open_partition(self, repo: str, image: str, number: int) -> AbstractContextManager[Path]:
        from appliance.jobs.extract import mounted

        return mounted(where_of(repo, image), number, threading.Event())

    def copy_destinations(self, disks: Sequence[Disk], avoid: set[str]) -> list[Volume]:
        """Filesystems files may be copied onto: none on the disks in `avoid` (the image's
        own), none on the stick the appliance booted from."""
        banned = avoid | boot_disks() | {d.name for d in disks if d.boot_stick}
        return [v for v in volumes(disks) if v.disk not in banned]

    def mount_destination(self, node: str) -> RepoMount:
        return mount_volume(node, writable=True, role="reads the image from")

    def copy_job(self, root: Path, names: Sequence[str], dest: Path, source: ImageWhere) -> JobSpec:
        def run(progress: Progress, cancel: threading.Event) -> JobSummary:
            from appliance.jobs.extract import copy_files

            report = copy_files(
                root, names, dest, sources=source.sources(), progress=progress, cancel=cancel
            )
            return copy_summary(report)

        return JobSpec("copy", copy_title(len(names), source, dest), run)


def copy_title(count: int, source: ImageWhere, dest: Path) -> str:
    """What the job screen's title says: a copy, and that nothing is replaced."""
    return (
        f"Copy files (nothing on any disk is replaced): {count} chosen item(s) of "
        f"{source.describe()} into {dest}"
    )


def copy_summary(report: CopyReport) -> JobSummary:
    lines = report.lines()
    if report.complete:
        verdict = "Every chosen file was copied, with its dates; nothing on any disk was replaced."
    else:
        verdict = (
            f"{len(report.skipped)} item(s) skipped and {len(report.failed)} failed: "
            "see the lines above; the others were copied."
        )
    return JobSummary(tuple(lines), verdict)

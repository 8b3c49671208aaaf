"""The messages that travel up the interface: from a worker thread to its screen, and from a
screen to the app. Screens never import the app: what they need from it, they ask with one of
these (posted with `self.app.post_message`, so a message outlives the screen that sent it).
"""

from __future__ import annotations

from pathlib import Path

from textual.message import Message

from appliance.disk.model import Disk
from appliance.jobs.catalog import ImageSummary
from appliance.plan.preflight import Preflight
from appliance.progress import ProgressEvent
from appliance.repo.mount import RepoMount, Volume
from appliance.repo.netmount import HeldMount
from tui.jobspec import WritePlan

EXIT_REBOOT = 80
EXIT_POWEROFF = 81

# -- from a screen to the app -----------------------------------------------------------------


class DisksChanged(Message):
    """The disks may have changed (the watcher heard the kernel, or the user asked for a
    rescan): the app scans them again, unless a job runs."""


class JobStarted(Message):
    """A job's screen started its job (and marked the session busy): the app stops watching
    the disks."""


class JobFinished(Message):
    """The job ended, done, failed or stopped (the session is no longer busy): the app
    watches and scans the disks again, and mounts the repository read-only again."""


class PowerRequest(Message):
    """The user asked, and confirmed, to restart (EXIT_REBOOT) or power off (EXIT_POWEROFF)
    the computer: the app leaves with that code, unless a job runs."""

    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code


# -- from a worker thread to its screen -----------------------------------------------------


class JobProgress(Message):
    """A progress event of the running job, posted from the engine's threads."""

    bubble = False

    def __init__(self, event: ProgressEvent) -> None:
        super().__init__()
        self.event = event

    def can_replace(self, message: Message) -> bool:
        # A newer event of the same phase supersedes this one when both wait in the queue
        # (the screen draws the last); an event of a new phase is always seen, since the
        # screen keeps the phases that ran (they say what a stopped job has written).
        return isinstance(message, JobProgress) and message.event.phase == self.event.phase


class WorkerResult(Message):
    """What a screen's worker returns; the screen posts it to itself when the worker ends."""

    bubble = False


class ImagesLoaded(WorkerResult):
    """The images of the repository `repo`."""

    def __init__(self, repo: str, images: list[ImageSummary]) -> None:
        super().__init__()
        self.repo = repo
        self.images = images


class Checked(WorkerResult):
    """The save's checks of `disk` (the preflight) and the images already in the repository."""

    def __init__(self, disk: Disk, preflight: Preflight, images: dict[str, ImageSummary]) -> None:
        super().__init__()
        self.disk = disk
        self.preflight = preflight
        self.images = images


class FilePlanned(WorkerResult):
    """An image file's write planned and checked by the engine: one plan per target."""

    def __init__(self, plans: list[WritePlan]) -> None:
        super().__init__()
        self.plans = plans


class RestoresPlanned(WorkerResult):
    """One image's restore onto several disks planned and checked: one plan per target."""

    def __init__(self, plans: list[WritePlan]) -> None:
        super().__init__()
        self.plans = plans


class Planned(WorkerResult):
    """A restore or clone planned and checked by the engine, ready for the confirmation."""

    def __init__(self, plan: WritePlan) -> None:
        super().__init__()
        self.plan = plan


class VolumesListed(WorkerResult):
    """The filesystems that can hold a repository."""

    def __init__(self, volumes: list[Volume]) -> None:
        super().__init__()
        self.volumes = volumes


class VolumeMounted(WorkerResult):
    """A filesystem the appliance mounted (read-only) and the repository folder on it."""

    def __init__(self, mount: RepoMount, path: Path) -> None:
        super().__init__()
        self.mount = mount
        self.path = path


class ShareMounted(WorkerResult):
    """A repository on a file server, mounted for as long as it is the one in use."""

    def __init__(self, held: HeldMount) -> None:
        super().__init__()
        self.held = held

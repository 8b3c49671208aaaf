"""The TUI's one door into the engine: every call into appliance/ goes through a Backend.

`EngineBackend` calls the real engine. Tests hand the app a fake with the same methods, so
that every screen can be driven (and photographed) without root or real disks.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from appliance.disk import identity
from appliance.disk.fsprobe import whole_disk_filesystem
from appliance.disk.model import Disk
from appliance.disk.probe import Problem, Scan, probe_disk, scan_disks
from appliance.disk.usage import disks_of_path, nearest_existing
from appliance.errors import ApplianceError, RepositoryError, UsageError
from appliance.jobs.catalog import ImageSummary, list_images
from appliance.jobs.extract import Choice, ImageWhere
from appliance.jobs.plantext import PlanText, clone_text, restore_text, saved_lines, target_now
from appliance.jobs.restore import RestorePlan
from appliance.jobs.shelflist import list_disk_files, list_shelf, list_windows, shelf_summary
from appliance.jobs.verify import last_verified
from appliance.jobs.writeplan import describe_steps
from appliance.plan.preflight import Preflight, Usage, free_space, measure_disk, preflight_save
from appliance.progress import Progress
from appliance.repo.image import authenticity_note
from appliance.repo.mount import RepoMount, Volume, mount_volume, volumes
from appliance.repo.netmount import HeldMount, NetOptions
from appliance.units import human_size, rate
from tui.browseengine import BrowseEngine
from tui.jobspec import JobSpec, JobSummary, VerifyRequest, WritePlan
from tui.roomjobs import RoomJobs

CLONE_MISSING = "Clone is not available in this build."


def is_file_restore(engine_plan: object) -> bool:
    """Whether a restore plan is of a disk file (a Windows system image's disk)."""
    try:  # it restores through clone, which is optional in a build
        from appliance.jobs.filerestore import FileRestorePlan
    except ImportError:
        return False
    return isinstance(engine_plan, FileRestorePlan)


class Backend(Protocol):
    include_loop: bool
    labels: dict[str, str]  # kernel name -> what the demo calls the disk

    def scan(self) -> Scan: ...
    def measure(self, disk: Disk) -> list[Usage]: ...
    def images(self, repo: str) -> list[ImageSummary]: ...
    def preflight(self, disk: Disk, repo: str) -> Preflight: ...
    def plan_restore(self, repo: str, image: str, target: str) -> WritePlan: ...
    def clone_available(self) -> bool: ...
    def plan_clone(self, source: str, target: str) -> WritePlan: ...
    def volumes(self, disks: Sequence[Disk]) -> list[Volume]: ...
    def mount(self, node: str, *, writable: bool, avoid: Sequence[str] = ()) -> RepoMount: ...
    def mount_network(self, location: str, options: NetOptions) -> HeldMount: ...
    def save_job(self, disk: Disk, repo: str, image: str, *, resume: bool) -> JobSpec: ...
    def write_job(self, plan: WritePlan) -> JobSpec: ...
    def plan_write_file(self, path: str, targets: Sequence[str]) -> list[WritePlan]: ...
    def plan_restores(self, repo: str, image: str, targets: Sequence[str]) -> list[WritePlan]: ...
    def restores_job(self, plans: Sequence[WritePlan]) -> JobSpec: ...
    def write_file_job(self, plans: Sequence[WritePlan]) -> JobSpec: ...
    def verify_job(self, request: VerifyRequest) -> JobSpec: ...
    def today(self) -> str: ...
    def free(self, path: str) -> int | None: ...
    def repo_disks(self, path: str) -> set[str]: ...
    def whole_filesystem(self, disk: Disk) -> str | None: ...
    # -- Browse: files out of an image (appliance.jobs.extract) ---------------------------
    def image_partitions(self, repo: str, image: str) -> list[Choice]: ...
    def open_partition(
        self, repo: str, image: str, number: int
    ) -> AbstractContextManager[Path]: ...
    def copy_destinations(self, disks: Sequence[Disk], avoid: set[str]) -> list[Volume]: ...
    def mount_destination(self, node: str) -> RepoMount: ...
    def copy_job(
        self, root: Path, names: Sequence[str], dest: Path, source: ImageWhere
    ) -> JobSpec: ...
    # -- Room: multicast (tui/roomjobs.py) --------------------------------------------------
    def cast_send_job(self, repo: str, image: str, receivers: int, wait: int) -> JobSpec: ...
    def plan_receive(self, target: str) -> WritePlan: ...
    def receive_job(self, plan: WritePlan) -> JobSpec: ...


class EngineBackend(BrowseEngine, RoomJobs):
    """The real engine (Browse: tui/browseengine.py; multicast jobs: tui/roomjobs.py)."""

    def __init__(
        self,
        include_loop: bool = False,
        labels: dict[str, str] | None = None,
        only: set[str] | None = None,
    ) -> None:
        self.include_loop = include_loop
        self.labels = labels or {}
        self.only = only  # the demo shows its own disks and no other

    def scan(self) -> Scan:
        if self.only is None:
            return scan_disks(self.include_loop)
        disks: list[Disk] = []
        problems: list[Problem] = []
        for name in sorted(self.only):  # probe these and no other
            try:
                ident = identity.read_identity(name)
                if ident.size == 0 or (ident.is_loop and not ident.backing_file):
                    continue  # detached, or unplugged
                disks.append(probe_disk(name))
            except ApplianceError as exc:
                problems.append(Problem(name, f"/dev/{name}", str(exc)))
        return Scan(tuple(disks), tuple(problems))

    def measure(self, disk: Disk) -> list[Usage]:
        return measure_disk(disk)

    def images(self, repo: str) -> list[ImageSummary]:
        """Our images, and other tools' images found in the same folder (Clonezilla's,
        Windows system images, disk image files)."""
        if "://" not in repo and not Path(repo).exists():  # chosen, nothing saved there yet
            raise RepositoryError(
                f"No image has been saved in {repo} yet (the folder does not exist): save a "
                "disk there first, or press P on the home screen to choose another repository."
            )
        shelf = [shelf_summary(item) for item in list_shelf(repo)] + list_windows(repo)
        shelf += list_disk_files(repo)
        try:
            return list_images(repo) + shelf
        except RepositoryError:
            if not shelf:
                raise
            return shelf  # a plain folder of Clonezilla images

    def preflight(self, disk: Disk, repo: str) -> Preflight:
        return preflight_save(disk, repo)

    def plan_restore(self, repo: str, image: str, target: str) -> WritePlan:
        from appliance.jobs.restore import plan_restore
        from appliance.jobs.shelfrestore import plan_shelf_restore, shelf_restore_text
        from appliance.shelf.clonezilla import find_folder

        windows = self._plan_windows(repo, image, target)
        if windows is not None:
            return windows
        disk_file = self._plan_disk_file(repo, image, target)
        if disk_file is not None:
            return disk_file
        folder = find_folder(repo, image)
        if folder is not None:  # a Clonezilla image: every stream is read through first
            shelf = plan_shelf_restore(folder, target)
            text = shelf_restore_text(shelf)
            return WritePlan(
                "restore", shelf.target, text, shelf.total, shelf, repo, image, verify_first=True
            )

        plan = plan_restore(repo, image, target)
        return WritePlan(
            "restore",
            plan.target,
            restore_text(plan),
            plan.total,
            plan,
            repo,
            image,
            verify_first=last_verified(plan.image.repo, image) is None,
        )

    def _plan_windows(self, repo: str, image: str, target: str) -> WritePlan | None:
        """A Windows system image's disk (as images() names it), planned as restore plans
        it on the command line; its data is read through before the first write."""
        if " " not in image:  # our images' and Clonezilla folders' names have no space
            return None
        if self._clone_module() is None:
            raise ApplianceError(f"{CLONE_MISSING} A Windows system image is restored by it.")
        from appliance.jobs.filerestore import (
            file_restore_text,
            find_windows_backup,
            plan_backup_restore,
        )

        found = find_windows_backup(repo, image)
        if found is None:
            return None
        backup, disk = found
        plan = plan_backup_restore(repo, backup, target, disk=disk)
        return WritePlan(
            "restore",
            plan.target,
            file_restore_text(plan),
            plan.total,
            plan,
            repo,
            image,
            verify_first=True,
        )

    def _plan_disk_file(self, repo: str, image: str, target: str) -> WritePlan | None:
        """A disk image file in the repository's folder (as images() names it: its file
        name), planned as `restore --file` plans it; read through before the first write."""
        path = Path(repo) / image
        if "/" in image or not path.is_file() or (Path(repo) / "images" / image).exists():
            return None
        if self._clone_module() is None:
            raise ApplianceError(f"{CLONE_MISSING} A disk image file is restored by it.")
        from appliance.jobs.filerestore import file_restore_text, plan_file_restore

        plan = plan_file_restore(path, target)
        return WritePlan(
            "restore",
            plan.target,
            file_restore_text(plan),
            plan.total,
            plan,
            repo,
            image,
            verify_first=True,
        )

    def _clone_module(self) -> Any:
        try:
            return importlib.import_module("appliance.jobs.clone")
        except ImportError:
            return None

    def clone_available(self) -> bool:
        return self._clone_module() is not None

    def plan_clone(self, source: str, target: str) -> WritePlan:
        module = self._clone_module()
        if module is None:
            raise ApplianceError(CLONE_MISSING)
        plan = module.plan_clone(source, target)
        return WritePlan("clone", plan.target, clone_text(plan), int(plan.total), plan)

    def whole_filesystem(self, disk: Disk) -> str | None:
        fs = whole_disk_filesystem(disk.node, disk.table)
        if fs is None:
            return None
        return f"{fs.type}{' ' + fs.label if fs.label else ''}"

    def volumes(self, disks: Sequence[Disk]) -> list[Volume]:
        return volumes(disks)

    def mount(self, node: str, *, writable: bool, avoid: Sequence[str] = ()) -> RepoMount:
        return mount_volume(node, writable=writable, avoid=avoid)

    def mount_network(self, location: str, options: NetOptions) -> HeldMount:
        return HeldMount(location, options)

    def today(self) -> str:
        return time.strftime("%Y-%m-%d")

    def free(self, path: str) -> int | None:
        return free_space(path)

    def repo_disks(self, path: str) -> set[str]:
        return disks_of_path(nearest_existing(Path(path)))

    # -- jobs -----------------------------------------------------------------------------
    def save_job(self, disk: Disk, repo: str, image: str, *, resume: bool) -> JobSpec:
        def run(progress: Progress, cancel: threading.Event) -> JobSummary:
            from appliance.jobs.save import save

            started = time.monotonic()
            manifest = save(
                disk.node, repo, image, resume=resume, progress=progress, cancel=cancel, create=True
            )
            lines = list(saved_lines(manifest, time.monotonic() - started, disk.describe()))
            # copied whole, unreadable areas and the files they hit (all of it in log.txt)
            lines += [f"Warning: {warning}" for warning in manifest.figures.warnings]
            return JobSummary(
                tuple(lines),
                "Not verified yet: press V to re-read and check every chunk of the image.",
                VerifyRequest(repo, image),
            )

        verb = "Resume saving" if resume else "Save"
        return JobSpec("save", f"{verb} {disk.describe()} as image {image}", run, image=image)

    def write_job(self, plan: WritePlan) -> JobSpec:
        def run(progress: Progress, cancel: threading.Event) -> JobSummary:
            started = time.monotonic()
            if plan.kind == "restore" and is_file_restore(plan.engine_plan):
                return self._file_restore(plan, progress, cancel, started)
            if plan.kind == "restore" and not isinstance(plan.engine_plan, RestorePlan):
                return self._shelf_restore(plan, progress, cancel, started)
            if plan.kind == "restore":
                from appliance.jobs.restore import restore

                engine_plan = plan.engine_plan
                assert isinstance(engine_plan, RestorePlan)  # what plan_restore handed out
                restore(
                    engine_plan, progress=progress, cancel=cancel, verify_first=plan.verify_first
                )
                took = time.monotonic() - started
                note = authenticity_note(engine_plan.image)
                return JobSummary(
                    (
                        f"Restored image {plan.image} onto {plan.target.describe()}: "
                        f"{rate(plan.total, took)}.",
                        *([f"Note: {note}."] if note else []),
                    ),
                    "Every chunk was re-hashed as it was read. Press V to compare the whole "
                    "disk with the image.",
                    VerifyRequest(plan.repo, plan.image, plan.target.name),
                )
            module = self._clone_module()
            if module is None:
                raise ApplianceError(CLONE_MISSING)
            warnings = module.clone(plan.engine_plan, progress=progress, cancel=cancel)
            took = time.monotonic() - started
            done = f"Cloned {plan.source} onto {plan.target.describe()}: {rate(plan.total, took)}."
            return JobSummary(
                (done, *(f"Warning: {w}." for w in warnings or ())),
                "The copy was not compared with the source afterwards.",
            )

        verb = "Restore" if plan.kind == "restore" else "Clone"
        return JobSpec(
            plan.kind,
            f"{verb} {plan.source} onto {plan.target.describe()}",
            run,
            target=plan.target,
        )

    def plan_write_file(self, path: str, targets: Sequence[str]) -> list[WritePlan]:
        """`appliance write`'s plan, as one confirmation per target."""
        from appliance.jobs.imagefit import plan_write
        from appliance.jobs.writefile import write_steps

        plan = plan_write(path, list(targets))
        source = f"image file {plan.image.name} ({plan.image.describe()}, {human_size(plan.size)})"
        steps = tuple(describe_steps(write_steps(plan)))
        out = []
        for target in plan.targets:
            layout = [f"the file's {human_size(target.length)}, then read back and compared"]
            if target.short:
                layout.append(f"only its first {target.length} bytes: {target.short}")
            text = PlanText(
                "write", source, target.disk.describe(), target_now(target.disk), tuple(layout),
                steps,
            )  # fmt: skip
            out.append(WritePlan("write", target.disk, text, target.length, plan))
        return out

    def write_file_job(self, plans: Sequence[WritePlan]) -> JobSpec:
        from appliance.jobs.imagefit import WriteFilePlan
        from appliance.jobs.writefile import write_file

        engine_plan = plans[0].engine_plan
        assert isinstance(engine_plan, WriteFilePlan)  # what plan_write_file handed out
        # only the targets the user confirmed (all of them, or the job is not started)
        confirmed = {p.target.node for p in plans}
        engine_plan.targets = [t for t in engine_plan.targets if t.disk.node in confirmed]

        def run(progress: Progress, cancel: threading.Event) -> JobSummary:
            started = time.monotonic()
            verdicts = write_file(engine_plan, progress=progress, cancel=cancel)
            took = time.monotonic() - started
            lines = [
                f"Wrote {engine_plan.image.name} onto {len(verdicts)} disk(s): "
                f"{rate(engine_plan.size, took)}.",
                *(f"{v.line()}." for v in verdicts),
            ]
            failed = [v for v in verdicts if not v.ok]
            return JobSummary(
                tuple(lines),
                f"{len(failed)} of {len(verdicts)} disks do NOT hold the image: see the "
                "FAILED lines."
                if failed
                else "Every disk was read back and matches the file.",
            )

        disks = tuple(t.disk for t in engine_plan.targets)
        return JobSpec(
            "write",
            f"Write {engine_plan.image.name} onto {', '.join(d.node for d in disks)}",
            run,
            targets=disks,
        )

    def plan_restores(self, repo: str, image: str, targets: Sequence[str]) -> list[WritePlan]:
        """One image onto several disks: one plan (and confirmation) per disk."""
        from appliance.jobs.filerestore import find_windows_backup
        from appliance.jobs.multirestore import plan_restores
        from appliance.shelf.clonezilla import find_folder

        if find_folder(repo, image) is not None:
            raise UsageError(
                f"{image} is a Clonezilla image: it is restored onto one disk at a time; "
                "choose one disk with Enter."
            )
        if find_windows_backup(repo, image) is not None:
            raise UsageError(
                f"{image} is a Windows system image: it is restored onto one disk at a time; "
                "choose one disk with Enter."
            )
        plans = plan_restores(repo, image, list(targets))
        fresh = last_verified(plans[0].image.repo, image) is None
        return [
            WritePlan("restore", p.target, restore_text(p), p.total, p, repo, image, fresh)
            for p in plans
        ]

    def restores_job(self, plans: Sequence[WritePlan]) -> JobSpec:
        """The confirmed plans as one job: each chunk read once, written to every disk."""
        engine_plans = [p.engine_plan for p in plans]
        assert all(isinstance(p, RestorePlan) for p in engine_plans)  # from plan_restores
        first = plans[0]

        def run(progress: Progress, cancel: threading.Event) -> JobSummary:
            from appliance.jobs.multirestore import restore_many

            started = time.monotonic()
            result = restore_many(
                [p for p in engine_plans if isinstance(p, RestorePlan)],
                progress=progress,
                cancel=cancel,
                verify_first=first.verify_first,
            )
            took = time.monotonic() - started
            good = [v for v in result.verdicts if v.ok]
            head = engine_plans[0]
            assert isinstance(head, RestorePlan)
            note = authenticity_note(head.image)
            lines = [
                f"Restored image {first.image} onto {len(good)} of {len(plans)} disks: "
                f"{rate(max(p.total for p in plans), took)}.",
                *(f"{v.line().rstrip('.')}." for v in result.verdicts),
                *([f"Note: {note}."] if note else []),
            ]
            if result.stop is not None and not good:
                raise result.stop
            bad = len(plans) - len(good)
            return JobSummary(
                tuple(lines),
                f"{bad} of {len(plans)} disks do NOT hold the image: see the FAILED lines."
                if bad
                else "Every chunk was re-hashed once as it was read, for every disk.",
            )

        disks = tuple(p.target for p in plans)
        return JobSpec(
            "restore",
            f"Restore {first.source} onto {', '.join(d.node for d in disks)}",
            run,
            targets=disks,
        )

    def _file_restore(
        self, plan: WritePlan, progress: Progress, cancel: threading.Event, started: float
    ) -> JobSummary:
        from appliance.jobs.filerestore import FileRestorePlan, restore_file

        engine_plan = plan.engine_plan
        assert isinstance(engine_plan, FileRestorePlan)  # what _plan_windows handed out
        restore_file(engine_plan, progress=progress, cancel=cancel, verify_first=plan.verify_first)
        took = time.monotonic() - started
        return JobSummary(
            (
                f"Restored {engine_plan.title} onto {plan.target.describe()}: "
                f"{rate(plan.total, took)}.",
            ),
            "Every byte copied was read through before the first write; the copy was not "
            "compared with the file afterwards.",
        )

    def _shelf_restore(
        self, plan: WritePlan, progress: Progress, cancel: threading.Event, started: float
    ) -> JobSummary:
        from appliance.jobs.shelfrestore import ShelfRestorePlan, check_streams, shelf_restore

        engine_plan = plan.engine_plan
        assert isinstance(engine_plan, ShelfRestorePlan)  # what plan_restore handed out
        if plan.verify_first:
            check_streams(engine_plan, progress=progress, cancel=cancel)
        warnings = shelf_restore(engine_plan, progress=progress, cancel=cancel)
        took = time.monotonic() - started
        return JobSummary(
            (
                f"Restored {plan.source} onto {plan.target.describe()}: {rate(plan.total, took)}.",
                *(f"Warning: {warning}" for warning in warnings),
            ),
            "Every partclone checksum was checked before the first write and again as it "
            "was written.",
        )

    def verify_job(self, request: VerifyRequest) -> JobSpec:
        def run(progress: Progress, cancel: threading.Event) -> JobSummary:
            from appliance.jobs.verify import verify_against, verify_image

            started = time.monotonic()
            if request.disk:
                result = verify_against(
                    request.repo, request.image, request.disk, progress=progress, cancel=cancel
                )
                what = f"/dev/{request.disk} holds the same data as image {request.image}"
            else:
                result = verify_image(request.repo, request.image, progress=progress, cancel=cancel)
                what = f"Image {request.image} is intact: {result.chunks} chunks re-hashed"
            if result.skipped:
                what += " in every part that was compared; not everything was"
            took = time.monotonic() - started
            lines = [f"{what} ({rate(result.bytes_checked, took)})."]
            lines += [f"{check.line()}." for check in result.checks]
            # "Verified." is said only of a job that compared everything it holds
            return JobSummary(
                tuple(lines),
                "Compared where shown; see what was not." if result.skipped else "Verified.",
            )

        against = f" against /dev/{request.disk}" if request.disk else ""
        return JobSpec("verify", f"Verify image {request.image}{against}", run)

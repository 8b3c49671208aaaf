"""``appliance unattended``: run the job that the kernel command line asks for.

Like Clonezilla's ``ocs_live_run``: the live system runs it on tty1 when ``appliance.job=`` is
on the kernel command line (the keys: appliance.cli.cmdline). The disks are named as
appliance.disk.naming says; the repository's partition is mounted by appliance.repo.mount
under /run/appliance (read-write for save, read-only for restore and verify) and unmounted
when the job ends. Every line goes to the job's terminal and to each other kernel console
(appliance.cli.console). A failure never powers off or reboots.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from appliance.cli import labmode
from appliance.cli.cmdline import JobSpec, parse_cmdline
from appliance.cli.console import Console, mirror_consoles
from appliance.disk.naming import resolve_partition
from appliance.errors import ApplianceError, DeviceError, RepositoryError, UsageError
from appliance.logsetup import report_internal_error, setup_logging
from appliance.progress import Progress
from appliance.repo.mount import RepoMount, mount_volume
from appliance.repo.netaddress import is_network
from appliance.repo.netmount import NetOptions, load_credentials, mounted

__all__ = ["Console", "JobSpec", "main", "run", "run_job", "wait_for"]

T = TypeVar("T")


def wait_for(
    what: Callable[[], str],
    seconds: float,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Call ``what`` until it stops raising DeviceError (USB disks appear late) or time runs
    out; then the last DeviceError goes up."""
    deadline = time.monotonic() + seconds
    told = False
    while True:
        try:
            return what()
        except DeviceError as exc:
            if time.monotonic() >= deadline:
                raise
            if not told:
                say(f"waiting up to {seconds:.0f} s: {exc}")
                told = True
            sleep(1.0)


@contextlib.contextmanager
def mounted_repository(device: str, writable: bool, say: Callable[[str], None]) -> Iterator[Path]:
    """The repository's filesystem mounted (read-only unless ``writable``) by the one mounter
    the interface uses too; unmounted at the end when the job mounted it."""
    with mounted_volume(device, writable, say) as mount:
        yield mount.mountpoint


@contextlib.contextmanager
def mounted_volume(device: str, writable: bool, say: Callable[[str], None]) -> Iterator[RepoMount]:
    """mounted_repository's mount itself (it can be made writable for the summary line)."""
    mount = mount_volume(device, writable=writable)
    try:
        yield mount
    finally:
        os.sync()
        try:
            mount.unmount()
        except ApplianceError as exc:  # the job's own result still stands
            say(f"warning: {exc}")


def network_options(spec: JobSpec, say: Callable[[str], None]) -> NetOptions:
    """How an unattended job reaches a file server: it asks nothing; its credentials come
    from a file on a partition (appliance.credentials=PARTITION:/FILE), read into memory and
    the partition unmounted again before the job starts."""
    options = NetOptions(ask=None, accept_host_key=spec.host_key)
    if spec.credentials is not None:
        options.given = read_credentials(spec, say, lambda p: load_credentials(p, private=False))
    return options


def read_credentials(
    spec: JobSpec,
    say: Callable[[str], None],
    read: Callable[[Path], T],
    place_file: str | None = None,
    what: str = "credentials",
) -> T:
    """``read`` of the credentials file appliance.credentials=PARTITION:/FILE names (or of
    `place_file`), the partition unmounted again before the job starts."""
    spot = place_file or spec.credentials
    assert spot is not None
    place, _, file = spot.partition(":/")
    device = wait_for(lambda: resolve_partition(place), spec.wait, say)
    with mounted_repository(device, False, say) as mountpoint:
        value = read(mountpoint / file)
    say(f"{what}: read from {file} on {device}")
    return value


def passphrase(spec: JobSpec, say: Callable[[str], None]) -> None:
    """An encrypted repository's passphrase, from appliance.passphrase_file=PARTITION:/FILE
    (kept in memory for this job only; without it an encrypted repository is refused)."""
    from appliance.cli.keys import read_passphrase_file
    from appliance.repo import keyring

    if spec.passphrase_file is None:

        def nobody_to_ask(where: str) -> str:
            raise RepositoryError(
                f"The repository at {where} is encrypted; name a file that holds its "
                "passphrase with appliance.passphrase_file=PARTITION:/FILE."
            )

        keyring.set_passphrase_source(nobody_to_ask)
        return
    text = read_credentials(spec, say, read_passphrase_file, spec.passphrase_file, "passphrase")
    keyring.set_passphrase_source(lambda where: text)


def aws_credentials(spec: JobSpec, say: Callable[[str], None]) -> None:
    """For an s3:// repository: the AWS variables of the credentials file, when one is named
    (else boto3 finds its settings where it always looks)."""
    if spec.credentials is None or not spec.repo.lower().startswith("s3://"):
        return

    def read(path: Path) -> dict[str, str]:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(
                f"The credentials file {spec.credentials} cannot be read ({exc.strerror})."
            ) from None
        return labmode.parse_aws_file(text, str(spec.credentials))

    names = labmode.use_aws_variables(read_credentials(spec, say, read))
    say(f"credentials: {', '.join(names)} set for the bucket")


def _writable(volume: RepoMount, say: Callable[[str], None]) -> bool:
    """Remount the repository's filesystem read-write for the summary line (the job itself
    ran read-only); False, with a warning, when it cannot be."""
    try:
        volume.ensure(True)
    except ApplianceError as exc:
        say(f"warning: the summary line is not written: {exc}")
        return False
    return True


def wait_for_target(text: str, seconds: float, say: Callable[[str], None]) -> tuple[str, str]:
    """The disk appliance.target= (or source=) names or chooses by rule (disks appear late)."""
    found: list[str] = []

    def resolve() -> str:
        node, described = labmode.resolve_target(text, say)
        found[:] = [described]
        return node

    node = wait_for(resolve, seconds, say)
    return node, found[0]


def power(action: str) -> None:
    """Power off or reboot through systemd."""
    subprocess.run(["systemctl", action], check=False)


def run_job(spec: JobSpec, console: Console, cancel: threading.Event | None = None) -> str:
    """Resolve the disks, mount the repository, run the job; the line that says what was
    done. Raises ApplianceError with the sentence when anything fails."""
    from appliance.cli.jobs import describe_plan
    from appliance.jobs.plantext import restore_text, saved_lines
    from appliance.jobs.restore import plan_restore, restore
    from appliance.jobs.save import save
    from appliance.jobs.verify import verify_against, verify_image
    from appliance.repo.image import authenticity_note

    if spec.job == "receive":
        return receive_job(spec, console, cancel)
    say = console.say
    disk_spec = spec.disk
    passphrase(spec, say)
    writable = spec.job == "save"
    with contextlib.ExitStack() as stack:
        # lab mode: the summary line needs the repository writable at the end of the job
        can_write: Callable[[], bool] = lambda: True  # noqa: E731
        if labmode.is_store_address(spec.repo):
            aws_credentials(spec, say)
            repo = labmode.store_location(spec)
            say(f"repository: {repo}")
        else:
            if is_network(spec.repo):
                options = network_options(spec, say)
                mountpoint = stack.enter_context(
                    mounted(
                        spec.repo,
                        writable=True,  # a restore or verify writes its summary line only
                        check_write=writable,
                        create=writable,
                        options=options,
                    )
                )
                where = spec.repo
            else:
                device = wait_for(lambda: resolve_partition(spec.repo), spec.wait, say)
                volume = stack.enter_context(mounted_volume(device, writable, say))
                mountpoint, where = volume.mountpoint, device
                can_write = lambda: _writable(volume, say)  # noqa: E731
            repo = labmode.folder_location(mountpoint, spec)
            say(
                f"repository: {where} mounted {'read-write' if writable else 'read-only'} "
                f"at {mountpoint}"
            )
        record = stack.enter_context(labmode.summary(spec, repo, say, can_write))
        disk = None
        if disk_spec:
            disk, record.target = wait_for_target(disk_spec, spec.wait, say)
        progress = Progress(console.listener(), interval=0.5)
        started = time.monotonic()
        if spec.job == "save":
            assert disk is not None
            manifest = save(
                disk,
                repo,
                spec.image,
                level=spec.level,
                progress=progress,
                cancel=cancel,
                create=True,
            )
            for warning in manifest.figures.warnings:
                say(f"warning: {warning}")
            return " ".join(saved_lines(manifest, time.monotonic() - started, disk))
        if spec.job == "restore":
            assert disk is not None
            plan = plan_restore(repo, spec.image, disk)
            text = restore_text(plan)
            for line in [*describe_plan(text).splitlines(), "Steps:", *text.steps]:
                say(line)
            restore(plan, progress=progress, cancel=cancel)
            note = authenticity_note(plan.image)
            if note is not None:
                say(f"note: {note}")
            return (
                f"restored image {spec.image} onto {plan.target.describe()} in "
                f"{time.monotonic() - started:.1f} s; every chunk was checked"
            )
        result = verify_image(repo, spec.image, progress=progress, cancel=cancel)
        line = f"image {spec.image} is intact: {result.chunks} chunks checked"
        if disk is not None:
            against = verify_against(
                repo,
                spec.image,
                disk,
                progress=Progress(console.listener(), interval=0.5),
                cancel=cancel,
            )
            line += f"; {disk} holds the same data"
            line += "".join(f" (not compared: {s})" for s in against.skipped)
        return line


def receive_job(spec: JobSpec, console: Console, cancel: threading.Event | None) -> str:
    """``appliance.job=receive``: the image a ``cast send`` multicasts, onto the target."""
    from appliance.jobs.cast import receive

    assert spec.target is not None
    disk, described = wait_for_target(spec.target, spec.wait, console.say)  # a name or a rule
    passphrase(spec, console.say)  # a keyed v1 repository's stream is checked with its key
    console.say(f"waiting for a multicast sender to erase {described} with its image")
    got = receive(
        disk,
        interface=spec.interface,
        fallback_url=spec.cast_from,
        progress=Progress(console.listener(), interval=0.5),
        cancel=cancel,
        say=console.say,
    )
    return got.line().rstrip(".")


def run(
    cmdline: str,
    console: Console,
    *,
    cancel: threading.Event | None = None,
    power_action: Callable[[str], None] = power,
) -> int:
    """The unattended job on ``cmdline``: 0 on success (then power off or reboot when asked),
    else the error's exit code after printing its sentence; a failure never powers off."""
    try:
        spec = parse_cmdline(cmdline)
    except ApplianceError as exc:
        console.say(f"appliance: the unattended job cannot start: {exc}")
        return exc.exit_code
    if spec is None:
        console.say("appliance: the kernel command line has no appliance.job=; nothing to do.")
        return 0
    console.say(f"appliance: unattended {spec.describe()}")
    try:
        line = run_job(spec, console, cancel)
    except ApplianceError as exc:
        return _failed(console, spec, str(exc), exc.exit_code)
    except KeyboardInterrupt:  # Ctrl-C: say so on the serial console too, then go up
        console.say(f"appliance: the unattended {spec.job} was stopped by the user.")
        raise
    except Exception as exc:  # a bug: its traceback in the log, one sentence on every console
        return _failed(console, spec, report_internal_error(exc), 70)
    console.say(f"appliance: unattended {spec.job} done: {line}")
    if spec.then != "shell":
        console.say(f"appliance: {spec.then} in 5 seconds")
        time.sleep(5)
        power_action(spec.then)
    return 0


def _failed(console: Console, spec: JobSpec, sentence: str, code: int) -> int:
    console.say(f"appliance: the unattended {spec.job} FAILED: {sentence}")
    console.say("appliance: nothing powers off; the screen stays as it is.")
    return code


def main(cmdline_file: str | None, cancel: threading.Event | None = None) -> int:
    """``appliance unattended [--cmdline FILE]``: read the command line and run its job."""
    setup_logging("unattended")
    path = Path(cmdline_file or "/proc/cmdline")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"The command line file {path} cannot be read ({exc.strerror}).") from exc
    console = Console(sys.stdout, mirror_consoles(sys.stdout))
    try:
        return run(text, console, cancel=cancel)
    finally:
        console.close()

"""Unattended jobs from the kernel command line, like Clonezilla's ``ocs_live_run``.

The live system runs ``appliance unattended`` on tty1 when ``appliance.job=`` is on the
kernel command line. Keys (values with spaces go in double quotes: ``appliance.target="model:
Samsung SSD 870"``):

==================  =============================================================================
appliance.job       ``save``, ``restore`` or ``verify`` (required)
appliance.repo      the partition that holds the repository: ``LABEL=IMAGES``, ``UUID=...``,
                    ``PARTUUID=...``, ``PARTLABEL=...`` or ``/dev/sdb1`` (required)
appliance.repo_dir  the repository's folder inside that filesystem (default: its top folder)
appliance.image     the image's name (required)
appliance.source    save: the disk to save (required for save)
appliance.target    restore: the disk to overwrite (required); verify: also compare this disk
appliance.then      ``shell`` (default: stay on the screen), ``poweroff`` or ``reboot``; only
                    after success: a failed job always stays on the screen with its sentence
appliance.level     save: zstd level 1-19 (default 3)
appliance.wait      seconds to wait for the disks and the repository to appear (default 30)
==================  =============================================================================

Disks are named ``serial:XYZ`` (the serial number, as ``appliance disks`` shows it), ``model:
NAME`` (must match exactly one disk; ``_`` stands for a space) or a kernel name (``sda``,
``/dev/nvme0n1``, ``/dev/disk/by-id/...``). The repository is mounted under /run/appliance/:
read-write for save, read-only for restore and verify, and unmounted when the job ends.
Every line is written to the job's terminal and to each other kernel console (a serial console).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, cast

from appliance.disk.model import Disk, human_size
from appliance.errors import (
    ApplianceError,
    DeviceError,
    RepositoryError,
    ToolFailed,
    UsageError,
)
from appliance.progress import Listener, Progress, ProgressEvent, terminal_listener

PREFIX = "appliance."
JOBS = ("save", "restore", "verify")
THEN = ("shell", "poweroff", "reboot")
KEYS = ("job", "repo", "repo_dir", "image", "source", "target", "then", "level", "wait")
REPO_TAGS = ("LABEL", "UUID", "PARTUUID", "PARTLABEL")
RUN_ROOT = Path("/run/appliance")


@dataclass(frozen=True)
class JobSpec:
    """One unattended job, as the kernel command line asks for it."""

    job: str
    repo: str
    image: str
    repo_dir: str = ""
    source: str | None = None
    target: str | None = None
    then: str = "shell"
    level: int = 3
    wait: float = 30.0

    def describe(self) -> str:
        disk = f" of {self.source}" if self.job == "save" else ""
        onto = f" onto {self.target}" if self.job == "restore" else ""
        against = f" against {self.target}" if self.job == "verify" and self.target else ""
        return (
            f"{self.job}{disk} image {self.image}{onto}{against}, repository {self.repo}"
            f"{'/' + self.repo_dir if self.repo_dir else ''}, then {self.then}"
        )


def split_cmdline(text: str) -> list[str]:
    """The kernel's words: split at blanks outside double quotes, the quotes removed."""
    words: list[str] = []
    current: list[str] = []
    quoted = False
    started = False
    for char in text:
        if char == '"':
            quoted = not quoted
            started = True
        elif char.isspace() and not quoted:
            if started:
                words.append("".join(current))
            current, started = [], False
        else:
            current.append(char)
            started = True
    if started:
        words.append("".join(current))
    return words


def parse_cmdline(text: str) -> JobSpec | None:
    """The job the command line asks for, or None when it has no ``appliance.job``."""
    values: dict[str, str] = {}
    for word in split_cmdline(text):
        if not word.startswith(PREFIX):
            continue
        key, sep, value = word[len(PREFIX) :].partition("=")
        if key not in KEYS:
            raise UsageError(
                f"The kernel command line has {PREFIX}{key}, which the appliance "
                f"does not know; the keys are {', '.join(PREFIX + k for k in KEYS)}."
            )
        if not sep or not value.strip():
            raise UsageError(f"{PREFIX}{key} on the kernel command line has no value.")
        values[key] = value.strip()
    if "job" not in values:
        return None
    job = values["job"]
    if job not in JOBS:
        raise UsageError(f"{PREFIX}job={job} is not a job; use save, restore or verify.")
    for key in ("repo", "image"):
        if key not in values:
            raise UsageError(
                f"The unattended {job} needs {PREFIX}{key}= on the kernel command line."
            )
    needed = {"save": "source", "restore": "target"}.get(job)
    if needed and needed not in values:
        raise UsageError(
            f"The unattended {job} needs {PREFIX}{needed}= on the kernel command "
            "line (serial:..., model:... or a kernel name such as sda)."
        )
    then = values.get("then", "shell")
    if then not in THEN:
        raise UsageError(f"{PREFIX}then={then} is not known; use shell, poweroff or reboot.")
    return JobSpec(
        job=job,
        repo=values["repo"],
        image=values["image"],
        repo_dir=values.get("repo_dir", "").strip("/"),
        source=values.get("source") if job == "save" else None,
        target=values.get("target") if job != "save" else None,
        then=then,
        level=_number("level", values.get("level", "3"), 1, 19),
        wait=float(_number("wait", values.get("wait", "30"), 0, 3600)),
    )


def _number(key: str, text: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise UsageError(f"{PREFIX}{key}={text} must be a whole number from {low} to {high}.")
    return int(text)


# ------------------------------------------------------------------ naming disks


def _norm(text: str) -> str:
    return " ".join(text.replace("_", " ").split()).casefold()


def match_disk(spec: str, disks: Sequence[Disk]) -> Disk:
    """The one disk that ``serial:XYZ`` or ``model:NAME`` names among ``disks``."""
    kind, _, wanted = spec.partition(":")
    if kind == "serial":
        found = [d for d in disks if d.serial and d.serial.strip() == wanted.strip()]
    elif kind == "model":
        found = [d for d in disks if d.model and _norm(d.model) == _norm(wanted)]
    else:
        raise UsageError(f"{spec} is not serial:..., model:... or a kernel name.")
    if len(found) == 1:
        return found[0]
    if not found:
        known = "; ".join(d.describe() for d in disks) or "none"
        raise DeviceError(f"No disk has the {kind} {wanted!r}. The disks are: {known}.")
    names = ", ".join(d.node for d in found)
    raise UsageError(
        f"{len(found)} disks have the {kind} {wanted!r} ({names}); name the disk "
        "by its serial number instead."
    )


def resolve_disk(spec: str) -> str:
    """The device node of the disk ``spec`` names (serial:, model: or a kernel name)."""
    from appliance.disk import probe as devices

    if spec.startswith(("serial:", "model:")):
        return match_disk(spec, devices.list_disks()).node
    return "/dev/" + devices.resolve_name(spec)


def resolve_repo_device(spec: str) -> str:
    """The partition node that ``LABEL=...``, ``UUID=...`` or ``/dev/...`` names."""
    from appliance.tools import run

    tag, sep, value = spec.partition("=")
    if not sep:
        if not spec.startswith("/dev/"):
            raise UsageError(
                f"{PREFIX}repo={spec} is not LABEL=..., UUID=..., PARTUUID=..., "
                "PARTLABEL=... or a /dev/ path."
            )
        if not os.path.exists(spec):
            raise DeviceError(f"There is no partition {spec} for the repository.")
        return spec
    if tag.upper() not in REPO_TAGS:
        raise UsageError(f"{PREFIX}repo={spec}: {tag} is not one of {', '.join(REPO_TAGS)}.")
    # -c /dev/null: probe the devices now rather than trust a cache from another boot
    proc = run(
        ["blkid", "-c", "/dev/null", "-o", "device", "-t", f"{tag.upper()}={value}"], check=False
    )
    nodes = sorted(set(proc.stdout.split()))
    if not nodes:
        raise DeviceError(f"No partition has {tag.upper()}={value} for the repository.")
    if len(nodes) > 1:
        raise UsageError(
            f"{len(nodes)} partitions have {tag.upper()}={value} "
            f"({', '.join(nodes)}); name the repository by UUID=... instead."
        )
    return nodes[0]


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


# ------------------------------------------------------------------ the repository mount


@contextlib.contextmanager
def mounted_repo(device: str, mountpoint: Path, writable: bool) -> Iterator[Path]:
    """Mount the repository's filesystem (read-only unless ``writable``); unmount at the end."""
    from appliance.tools import run

    mountpoint.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(mountpoint):
        raise RepositoryError(f"Something is already mounted at {mountpoint}; unmount it first.")
    options = "rw,noatime" if writable else "ro"
    try:
        run(["mount", "-o", options, device, str(mountpoint)], timeout=120)
    except ToolFailed as exc:
        mode = "read-write" if writable else "read-only"
        raise RepositoryError(
            f"The repository partition {device} cannot be mounted {mode} ({exc})."
        ) from exc
    try:
        yield mountpoint
    finally:
        os.sync()
        run(["umount", str(mountpoint)], check=False, timeout=120)


# ------------------------------------------------------------------ console output


class Console:
    """Writes every line to the job's terminal and to the other kernel consoles (serial)."""

    def __init__(self, main: TextIO, mirrors: Sequence[TextIO] = ()) -> None:
        self.main = main
        self.mirrors = list(mirrors)

    def say(self, line: str) -> None:
        for stream in [self.main, *self.mirrors]:
            try:
                stream.write(line + "\n")
                stream.flush()
            except OSError:
                continue  # a serial port nobody listens to must not stop the job

    def listener(self) -> Listener:
        shows = [terminal_listener(self.main)]
        shows += [terminal_listener(cast(TextIO, _Plain(m))) for m in self.mirrors]

        def show(event: ProgressEvent) -> None:
            for one in shows:
                with contextlib.suppress(OSError):
                    one(event)

        return show

    def close(self) -> None:
        for stream in self.mirrors:
            with contextlib.suppress(OSError):
                stream.close()


class _Plain:
    """A stream that says it is no terminal: progress as plain lines every few seconds."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        return self._stream.write(text.replace("\r", ""))

    def flush(self) -> None:
        self._stream.flush()


def mirror_consoles(
    main: TextIO, active: Path = Path("/sys/class/tty/console/active"), dev: Path = Path("/dev")
) -> list[TextIO]:
    """The kernel consoles other than virtual terminals and ``main`` itself, opened for
    writing (a serial console shows the job too)."""
    try:
        names = active.read_text().split()
    except OSError:
        return []
    try:
        own = os.fstat(main.fileno()).st_rdev
    except (OSError, ValueError, AttributeError):
        own = None
    out: list[TextIO] = []
    for name in names:
        if re.fullmatch(r"tty\d*", name):
            continue  # virtual terminals: tty1 is the job's own screen
        try:
            fd = os.open(dev / name, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            continue
        if own is not None and os.fstat(fd).st_rdev == own:
            os.close(fd)
            continue
        out.append(open(fd, "w", encoding="utf-8", errors="replace"))  # noqa: SIM115
    return out


# ------------------------------------------------------------------ running the job


def power(action: str) -> None:
    """Power off or reboot through systemd."""
    subprocess.run(["systemctl", action], check=False)


def run_job(
    spec: JobSpec,
    console: Console,
    cancel: threading.Event | None = None,
    run_root: Path = RUN_ROOT,
) -> str:
    """Resolve the disks, mount the repository, run the job; the line that says what was
    done. Raises ApplianceError with the sentence when anything fails."""
    from appliance.cli.jobs import describe_plan
    from appliance.jobs.restore import plan_restore, restore
    from appliance.jobs.save import save
    from appliance.jobs.verify import verify_against, verify_image

    say = console.say
    device = wait_for(lambda: resolve_repo_device(spec.repo), spec.wait, say)
    disk_spec = spec.source if spec.job == "save" else spec.target
    disk = wait_for(lambda: resolve_disk(disk_spec), spec.wait, say) if disk_spec else None
    writable = spec.job == "save"
    with mounted_repo(device, run_root / "repo", writable) as mountpoint:
        repo = str(mountpoint / spec.repo_dir) if spec.repo_dir else str(mountpoint)
        say(
            f"repository: {device} mounted {'read-write' if writable else 'read-only'} "
            f"at {mountpoint}"
        )
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
            stats = manifest.stats
            for warning in stats.get("warnings", []):
                say(f"warning: {warning}")
            return (
                f"saved {disk} as image {spec.image}: {human_size(int(stats['used_bytes']))} "
                f"used, {stats['new_chunks']} new chunks, {stats['reused_chunks']} already "
                f"stored, in {time.monotonic() - started:.1f} s"
            )
        if spec.job == "restore":
            assert disk is not None
            plan = plan_restore(repo, spec.image, disk)
            for line in describe_plan(plan).splitlines():
                say(line)
            restore(plan, progress=progress, cancel=cancel)
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


def run(
    cmdline: str,
    console: Console,
    *,
    cancel: threading.Event | None = None,
    run_root: Path = RUN_ROOT,
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
        line = run_job(spec, console, cancel, run_root)
    except ApplianceError as exc:
        console.say(f"appliance: the unattended {spec.job} FAILED: {exc}")
        console.say("appliance: nothing powers off; the screen stays as it is.")
        return exc.exit_code
    except BaseException:  # a bug or Ctrl-C: say so on the serial console too, then go up
        console.say(
            f"appliance: the unattended {spec.job} stopped (interrupted, or an "
            "internal error: see the screen and /var/log/appliance.log)."
        )
        raise
    console.say(f"appliance: unattended {spec.job} done: {line}")
    if spec.then != "shell":
        console.say(f"appliance: {spec.then} in 5 seconds")
        time.sleep(5)
        power_action(spec.then)
    return 0


def main(cmdline_file: str | None, cancel: threading.Event | None = None) -> int:
    """``appliance unattended [--cmdline FILE]``: read the command line and run its job."""
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

"""One partition of an image, mounted read-only: the seam that `appliance mount`, `files`,
`extract` and the interface's Browse screen stand on.

    for choice in partitions_of(ImageRef(repo="/mnt/usb/repo", image="laptop")): ...
    with mounted_partition(ImageRef(repo=..., image=...), 2) as root:
        os.listdir(root)

An image of our repository is read through a FUSE view of the partition (io/imageview.py:
chunks fetched on demand, checked, cached), attached as a READ-ONLY loop device and mounted
read-only without replaying any journal (fs/readonly.py); a VM disk or raw image file
(`file`) through the shelf's read-only loop device of the file (shelf/filedisk.py). The
steps are in jobs/mountsteps.py, with the record that lets `umount` and the next mount undo
what a killed process left (disk/deadmounts.py).

A Clonezilla image's partitions are listed but not mountable: its partclone streams are
compressed and can only be read from their start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from appliance.disk.deadmounts import (
    alive,
    clear_dead_image_mounts,
    read_record,
    records,
    undo_mount,
)
from appliance.errors import ApplianceError, DeviceError, UsageError
from appliance.fs.readonly import is_mounted, why_not_mountable
from appliance.jobs import mountsteps
from appliance.jobs.imageref import (
    START_SECONDS,
    STOP_SECONDS,
    ImageRef,
    PartitionChoice,
    choose_from,
)
from appliance.repo import mount as repomount
from appliance.repo.keyring import handover


def mounts_dir() -> Path:
    """Where each image mount keeps its folder and record."""
    return repomount.RUN_DIR / "mounts"


def partitions_of(ref: ImageRef) -> list[PartitionChoice]:
    """The partitions of the image or file, each said mountable or not (and why not)."""
    return mountsteps.partitions_of(ref)


def choose(ref: ImageRef, number: int | None) -> PartitionChoice:
    """The partition to mount: `number`, or the only mountable one (imageref.choose_from)."""
    return choose_from(ref, partitions_of(ref), number)


@contextmanager
def mounted_partition(
    ref: ImageRef, number: int, stop: threading.Event | None = None
) -> Iterator[Path]:
    """The partition's filesystem mounted read-only at a fresh directory; everything undone
    on exit."""

    choice = choose(ref, number)
    base = mounts_dir()
    base.mkdir(parents=True, exist_ok=True)
    clear_dead_image_mounts(base)
    folder = Path(tempfile.mkdtemp(prefix="m-", dir=base))
    root = folder / "root"
    root.mkdir()
    steps = mountsteps.MountSteps(ref, choice, folder, root)
    try:
        steps.attach(stop)
        yield root
    finally:
        steps.undo()


# ------------------------------------------------------------------ mounts that stay


def find_mount(where: Path) -> tuple[Path, dict[str, Any]] | None:
    """The folder and record of the image mount at `where`, or None."""
    target = str(where.resolve())
    for folder, record in records(mounts_dir()):
        if record.get("dir") == target:
            return folder, record
    return None


def start_mount(ref: ImageRef, number: int | None, where: Path) -> dict[str, Any]:
    """Mount the partition at `where` and return, leaving the view in a process of its own
    (its own session, so it outlives this one); its record once it is mounted."""
    where = where.resolve()
    if not where.is_dir():
        raise UsageError(f"{where} is not a folder; make it first (mkdir).")
    base = mounts_dir()
    base.mkdir(parents=True, exist_ok=True)
    clear_dead_image_mounts(base)
    if is_mounted(str(where)):
        raise UsageError(f"Something is already mounted at {where}.")
    if any(where.iterdir()):
        raise UsageError(f"{where} is not empty; mount onto an empty folder.")
    choice = choose(ref, number)
    folder = Path(tempfile.mkdtemp(prefix="m-", dir=base))
    args = [sys.executable, "-m", "appliance.jobs.mountsteps", "--folder", str(folder)]
    args += ["--at", str(where), "--partition", str(choice.number)]
    for name in ("repo", "image", "file"):
        value = getattr(ref, name)
        if value is not None:
            args += [f"--{name}", value]
    extra_env, fds = handover()  # keys unlocked by `choose` above go on through a pipe
    try:
        with open(folder / "keeper.log", "wb") as log:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env={**os.environ, **extra_env} if extra_env else None,
                pass_fds=fds,
            )
    finally:
        for fd in fds:
            os.close(fd)
    deadline = time.monotonic() + START_SECONDS
    while True:
        record = read_record(folder) or {}
        if record.get("ready"):
            return record
        if "error" in record or proc.poll() is not None:
            proc.wait(timeout=STOP_SECONDS)
            failed = read_record(folder) or {}
            found = failed.get("error") or _last_line(folder / "keeper.log")
            undo_mount(folder, failed)
            error = ApplianceError(found or f"{ref.describe()} could not be mounted.")
            error.exit_code = int(failed.get("exit_code", 1))
            raise error
        if time.monotonic() > deadline:
            proc.terminate()
            proc.wait(timeout=STOP_SECONDS)
            undo_mount(folder, read_record(folder) or {})
            raise DeviceError(
                f"Mounting {ref.describe()} did not finish within {START_SECONDS:.0f} seconds."
            )
        time.sleep(0.05)


def stop_mount(where: Path) -> dict[str, Any]:
    """Undo every step of the image mount at `where` (its record, as it was): the filesystem
    unmounted, the loop device detached, the view stopped; also when its process was
    killed. One sentence when nothing of ours is mounted there or it is still in use."""
    found = find_mount(where)
    if found is None:
        if is_mounted(str(where.resolve())):
            raise UsageError(f"{where} was not mounted by the appliance; unmount it with umount.")
        raise UsageError(f"Nothing is mounted at {where} by the appliance.")
    folder, record = found
    target = record["dir"]
    if is_mounted(target):
        done = subprocess.run(["umount", target], capture_output=True, text=True, check=False)
        if done.returncode != 0 and is_mounted(target):
            said = done.stderr.strip().splitlines()
            if "busy" in done.stderr:
                raise DeviceError(
                    f"{target} is still in use (a program has a file open or a shell is in "
                    "it); close it and run umount again."
                )
            raise DeviceError(f"{target} cannot be unmounted: {said[-1] if said else 'failed'}.")
    pid, start = record.get("pid"), record.get("start")
    if alive(pid, start):
        os.kill(int(pid or 0), 15)  # the keeper undoes its own steps
        deadline = time.monotonic() + STOP_SECONDS
        while alive(pid, start) and time.monotonic() < deadline:
            time.sleep(0.05)
    undo_mount(folder, read_record(folder) or record)  # what a killed keeper left
    return record


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


__all__ = [
    "ImageRef",
    "PartitionChoice",
    "choose",
    "mounted_partition",
    "partitions_of",
    "start_mount",
    "stop_mount",
    "why_not_mountable",
]

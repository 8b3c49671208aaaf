"""The steps of an image mount (jobs/imagemount.py), each recorded before it is taken so that
whatever stops the process, `appliance umount` and the next mount can undo it
(disk/deadmounts.py: `undo_mount`):

1. the view: for an image of our repository, a child process serving the partition as a
   read-only FUSE file (io/imageview.py; it unmounts itself when its parent is gone); for a
   disk file, the shelf's read-only loop device of the file (shelf/filedisk.py);
2. a READ-ONLY loop device over the view's file, autoclear: it goes when the filesystem on
   it is unmounted (a disk file's partition already is one);
3. the filesystem mounted read-only, no journal replayed (fs/readonly.py).

`python -m appliance.jobs.mountsteps --folder F --at DIR ...` is the process that keeps a
mount of `appliance mount`: it takes the steps, says "ready" in its record, and undoes them
when it gets SIGTERM (from `appliance umount`) or when DIR is unmounted under it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from appliance.disk.deadmounts import process_start, remove_folder, write_record
from appliance.errors import ApplianceError, DeviceError, UsageError
from appliance.fs.readonly import is_mounted, mount_read_only, unmount, why_not_mountable
from appliance.jobs.imageref import (
    START_SECONDS,
    STOP_SECONDS,
    ImageRef,
    PartitionChoice,
    choose_from,
    raise_if_stopped,
)
from appliance.shelf.filedisk import FileDisk, set_autoclear
from appliance.tools import run

CLONEZILLA_REASON = (
    "Clonezilla's partclone streams are compressed and can only be read from their start, "
    "so they cannot be mounted; import the image into a repository (appliance import) and "
    "mount it from there."
)


def partitions_of(ref: ImageRef) -> list[PartitionChoice]:
    if ref.file is not None:
        return _file_partitions(Path(ref.file))
    if ref.repo is None or ref.image is None:
        raise UsageError("Name an image (--repo DIR --image NAME) or a disk file (--file FILE).")
    from appliance.shelf.clonezilla import find_folder

    folder = find_folder(ref.repo, ref.image)
    if folder is not None:
        return _clonezilla_partitions(folder)
    from appliance.repo.image import load_image
    from appliance.repo.repository import Repository

    loaded = load_image(Repository.open(ref.repo), ref.image)
    out = []
    for region in loaded.manifest.regions:
        if region.partition is None:
            continue
        reason = why_not_mountable(region.fstype, region.method)
        out.append(
            PartitionChoice(
                region.partition,
                region.fstype,
                region.size,
                region.label,
                reason is None,
                reason,
            )
        )
    return out


def _clonezilla_partitions(folder: Path) -> list[PartitionChoice]:
    from appliance.shelf import clonezilla

    image = clonezilla.load(folder)
    return [
        PartitionChoice(part.number, part.fstype, part.size, None, False, CLONEZILLA_REASON)
        for disk in image.disks
        for part in disk.partitions
        if not part.extended
    ]


def _file_partitions(path: Path) -> list[PartitionChoice]:
    from appliance.disk.probe import probe_disk

    with FileDisk(path) as disk:
        probed = probe_disk(disk.node)
    out = []
    for part in probed.partitions:
        if part.kind == "extended":
            continue
        reason = why_not_mountable(part.fstype)
        out.append(
            PartitionChoice(part.number, part.fstype, part.size, part.label, reason is None, reason)
        )
    return out


class MountSteps:
    """The steps of one mount of `choice` of `ref` at `root`, recorded in `folder`."""

    def __init__(
        self,
        ref: ImageRef,
        choice: PartitionChoice,
        folder: Path,
        root: Path,
        *,
        keep: bool = False,
    ) -> None:
        self.ref = ref
        self.keep = keep  # a mount that stays: its parent removes the folder after a failure
        self.choice = choice
        self.folder = folder
        self.root = root
        self.view: subprocess.Popen[bytes] | None = None
        self.disk: FileDisk | None = None
        self.loop_fd: int | None = None
        self.record: dict[str, Any] = {
            "pid": os.getpid(),
            "start": process_start(os.getpid()),
            "dir": str(root.resolve()),
            "repo": ref.repo,
            "image": ref.image,
            "file": ref.file,
            "partition": choice.number,
            "fstype": choice.fstype,
            "mounted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self.save()

    def save(self) -> None:
        write_record(self.folder, self.record)

    @property
    def what(self) -> str:
        return f"partition {self.choice.number} of {self.ref.describe()}"

    def attach(self, stop: threading.Event | None = None) -> None:
        """Take every step; on failure undo what was done and raise its sentence."""
        try:
            if self.ref.file is not None:
                node = self._file_partition()
            else:
                node = self._loop(self._start_view(stop))
            raise_if_stopped(stop)
            mount_read_only(node, self.choice.fstype or "", str(self.root), what=self.what)
            self._let_go_of_loop()  # the mount holds it now
            self.record["ready"] = True
            self.save()
        except BaseException:
            self.undo(remove=not self.keep)
            raise

    def _start_view(self, stop: threading.Event | None) -> str:
        from appliance.repo.keyring import handover
        from appliance.repo.repository import Repository

        assert self.ref.repo is not None and self.ref.image is not None
        location = Repository.open(self.ref.repo).location
        mountpoint = self.folder / "view"
        mountpoint.mkdir(exist_ok=True)
        self.record["view"] = str(mountpoint)
        self.save()
        args = [sys.executable, "-m", "appliance.io.imageview", "--mount", str(mountpoint)]
        args += ["--repo", location, "--image", self.ref.image]
        args += ["--partition", str(self.choice.number), "--parent", str(os.getpid())]
        extra_env, fds = handover()  # an encrypted repository's keys, never in argv or env
        try:
            with open(self.folder / "view.log", "wb") as log:
                self.view = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env={**os.environ, **extra_env} if extra_env else None,
                    pass_fds=fds,
                )
        finally:
            for fd in fds:
                os.close(fd)
        self.record["view_pid"] = self.view.pid
        self.record["view_start"] = process_start(self.view.pid)
        self.save()
        path = mountpoint / "partition"
        deadline = time.monotonic() + START_SECONDS
        while not os.path.exists(path):
            raise_if_stopped(stop)
            if self.view.poll() is not None or time.monotonic() > deadline:
                said = _last_line(self.folder / "view.log")
                raise DeviceError(
                    f"The read-only view of {self.what} could not be made"
                    f"{': ' + said if said else ''}."
                )
            time.sleep(0.02)
        return str(path)

    def _loop(self, path: str) -> str:
        """A read-only loop device over the view's file, marked autoclear and held open
        until the filesystem is mounted on it: the kernel detaches it at its last close,
        so it goes with the mount, also when this process is killed."""
        self.record["backing"] = path
        self.save()
        node = run(["losetup", "--find", "--show", "--read-only", path], timeout=60).stdout.strip()
        self.record["loop"] = node
        self.save()
        widen_readahead(node)
        try:
            self.loop_fd = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
            set_autoclear(self.loop_fd)
        except OSError as exc:
            raise DeviceError(
                f"A read-only loop device for {self.what} cannot be set up: {exc.strerror}."
            ) from exc
        return node

    def _file_partition(self) -> str:
        from appliance.disk.probe import partition_node, probe_disk

        assert self.ref.file is not None
        self.disk = FileDisk(Path(self.ref.file))
        self.disk.__enter__()
        self.record["file_loop"] = self.disk.node
        self.save()
        return partition_node(probe_disk(self.disk.node), self.choice.number)

    def _let_go_of_loop(self) -> None:
        fd, self.loop_fd = self.loop_fd, None
        if fd is not None:
            os.close(fd)

    def undo(self, *, remove: bool = True) -> None:
        """Every step undone, last first; safe to call twice."""
        unmount(str(self.root))
        self._let_go_of_loop()  # autoclear: detached once unmounted
        if self.disk is not None:
            disk, self.disk = self.disk, None
            disk.close()
        view, self.view = self.view, None
        if view is not None:
            unmount(str(self.folder / "view"))
            try:
                view.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                view.kill()
                view.wait()
        if remove:
            remove_folder(self.folder)


#: read-ahead of the image's loop device: the filesystem's sequential reads then reach the
#: view in requests of a megabyte or more (Debian 12's kernel gives a loop device 128 KiB)
LOOP_READAHEAD_KIB = 16384


def widen_readahead(node: str) -> None:
    """Raise the read-ahead of block device `node` to LOOP_READAHEAD_KIB (never lower it)."""
    knob = Path("/sys/block") / Path(node).name / "queue" / "read_ahead_kb"
    try:
        if int(knob.read_text()) < LOOP_READAHEAD_KIB:
            knob.write_text(str(LOOP_READAHEAD_KIB))
    except (OSError, ValueError):
        pass  # no such knob (not root): the default read-ahead still works


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    lines = [line for line in lines if "max threads" not in line]  # libfuse's own notice
    return lines[-1].rstrip(".") if lines else ""


def keep(args: argparse.Namespace) -> int:
    """The process of a mount that stays: mount, then wait for SIGTERM or an unmount."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    ref = ImageRef(args.repo, args.image, args.file)
    folder = Path(args.folder)
    try:
        choice = choose_from(ref, partitions_of(ref), args.partition)
        steps = MountSteps(ref, choice, folder, Path(args.at), keep=True)
        steps.attach(stopping)
    except ApplianceError as exc:
        write_record(folder, {"error": str(exc), "exit_code": exc.exit_code})
        return exc.exit_code
    while not stopping.wait(0.5):
        if not is_mounted(steps.record["dir"]):
            break  # unmounted under us (umount DIR): undo the rest
    steps.undo()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="appliance.jobs.mountsteps", allow_abbrev=False)
    parser.add_argument("--folder", required=True)
    parser.add_argument("--at", required=True)
    parser.add_argument("--partition", type=int, required=True)
    parser.add_argument("--repo")
    parser.add_argument("--image")
    parser.add_argument("--file")
    return keep(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""VM disks (.qcow2, .vhd, .vhdx, .vmdk, .vdi) as raw files, with no full-size copy.

Debian's qemu tools do the format work: `qemu-img info` says what a file is and the size of
the disk it holds, `qemu-img check` finds damaged metadata, and `qemu-storage-daemon` serves
the disk as a raw file through FUSE (its `fuse` export), which every reader here can `pread`:

    with RawView(Path("laptop.vhdx")) as view:
        os.pread(fd_of(view.path), 4096, 0)

A view is read-only unless `writable` (the export job writes a new VM disk through it; all-zero
writes then allocate nothing). The daemon runs under `setpriv --pdeathsig TERM`, so it stops
with the job that started it even when that job is killed; `close()` stops it by its PID
(SIGTERM: it flushes, unmounts its export and exits) and removes the view's folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from appliance.disk.deadmounts import clear_dead
from appliance.errors import CorruptData, DeviceError, ImageError, UnsupportedImage
from appliance.tools import run, which

#: file name ending -> qemu's name of the format
FORMATS = {".qcow2": "qcow2", ".vhd": "vpc", ".vhdx": "vhdx", ".vmdk": "vmdk", ".vdi": "vdi"}
#: qemu's name -> what people call it
NAMES = {"qcow2": "QCOW2", "vpc": "VHD", "vhdx": "VHDX", "vmdk": "VMDK", "vdi": "VDI"}
CHECK_CORRUPT = 2  # qemu-img check: the image is damaged
CHECK_UNSUPPORTED = 63  # qemu-img check: the format has no checks
START_SECONDS = 20
PREFIX = "appliance-vm-"


def vm_format(path: Path) -> str | None:
    """qemu's name of the VM format `path`'s name ends with, or None."""
    return FORMATS.get(path.suffix.lower())


@dataclass(frozen=True)
class VmDisk:
    """What `qemu-img info` says of a VM disk file."""

    path: Path
    format: str  # qemu's name: qcow2, vpc, vhdx, vmdk, vdi
    size: int  # bytes of the disk it holds
    allocated: int  # bytes the file takes
    backing: str | None  # the file a differencing disk reads its unchanged blocks from

    @property
    def kind(self) -> str:
        return NAMES.get(self.format, self.format)


def _last_line(text: str) -> str:
    """qemu's last message line, without its program name and "Could not open 'X': "."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    line = lines[-1].removeprefix("qemu-img: ") if lines else ""
    return re.sub(r"(Could not open '[^']*': )+", "", line)


def inspect(path: Path, fmt: str | None = None) -> VmDisk:
    """The VM disk in `path` (its format from its name unless `fmt`); one sentence when it is
    missing, not a VM disk of that format, or damaged."""
    fmt = fmt or vm_format(path)
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise UnsupportedImage(f"{path} is not a VM disk file the appliance reads ({known}).")
    if not path.is_file():
        raise ImageError(f"There is no VM disk file {path}.")
    name = NAMES.get(fmt, fmt)
    proc = run(["qemu-img", "info", "--output=json", "-f", fmt, str(path)], check=False)
    if proc.returncode != 0:
        raise UnsupportedImage(
            f"{path} cannot be read as a {name} disk: it is damaged or not a {name} "
            f"file ({_last_line(proc.stderr)})."
        )
    info = json.loads(proc.stdout)
    disk = VmDisk(
        path,
        fmt,
        int(info["virtual-size"]),
        int(info.get("actual-size", 0)),
        info.get("full-backing-filename") or info.get("backing-filename"),
    )
    if disk.backing is not None and not Path(disk.backing).is_file():
        raise ImageError(
            f"{path} is a differencing {name} disk and the disk it builds on, "
            f"{disk.backing}, is missing; put it beside it."
        )
    check(disk)
    return disk


def check(disk: VmDisk) -> None:
    """`qemu-img check` of the file's metadata (tables, headers; not the data): CorruptData
    when it is damaged. Formats qemu cannot check pass."""
    proc = run(["qemu-img", "check", "-f", disk.format, str(disk.path)], check=False)
    if proc.returncode == CHECK_CORRUPT or (
        proc.returncode not in (0, 3, CHECK_UNSUPPORTED)  # 3: leaked clusters, harmless
        and "not support" not in proc.stderr
    ):
        found = [line.strip() for line in proc.stdout.splitlines() if "errors were found" in line]
        why = (found[0] if found else "") or _last_line(proc.stderr) or "errors found"
        raise CorruptData(f"The {disk.kind} disk {disk.path} is damaged ({why.rstrip('.')}).")


def create(path: Path, fmt: str, size: int) -> None:
    """A new, empty VM disk of `size` bytes (the export job then writes it through a view)."""
    options = {"vpc": "subformat=dynamic,force_size=on", "vmdk": "subformat=monolithicSparse"}
    args = ["qemu-img", "create", "-q", "-f", fmt]
    if fmt in options:
        args += ["-o", options[fmt]]
    run([*args, str(path), str(size)])


def remove_leftovers(workdir: str) -> None:
    """The folders of views whose job was killed (its daemon stopped and unmounted, by its
    death signal, but nothing removed the folder): not mounted, and older than a start."""
    clear_dead(sorted(Path(workdir).glob(PREFIX + "*")), "disk.raw")  # whole group killed
    for folder in Path(workdir).glob(PREFIX + "*"):
        try:
            if os.path.ismount(folder / "disk.raw"):
                continue
            if time.time() - folder.stat().st_mtime < START_SECONDS * 2:
                continue  # a view being started right now
            for name in ("disk.raw", "daemon.log"):
                (folder / name).unlink(missing_ok=True)
            folder.rmdir()
        except OSError:
            continue


class RawView:
    """Context manager: a VM disk served as a raw file of its disk's size (`path`, `size`)."""

    def __init__(
        self,
        file: Path,
        *,
        fmt: str | None = None,
        writable: bool = False,
        workdir: str | None = None,
        disk: VmDisk | None = None,
    ) -> None:
        self.file = file.resolve()
        self.writable = writable
        self.disk = disk or inspect(self.file, fmt)
        self.size = self.disk.size
        self.workdir = workdir or os.environ.get("APPLIANCE_TMP", "/var/tmp")
        self.folder: Path | None = None
        self.path = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None  # the daemon's, once stopped: 0 when all went well

    def _args(self) -> list[str]:
        node: dict[str, object] = {
            "driver": self.disk.format,
            "node-name": "disk",
            "read-only": not self.writable,
            "file": {
                "driver": "file",
                "filename": str(self.file),
                "read-only": not self.writable,
            },
        }
        if self.writable:  # zeros written are holes: nothing allocated for them
            node["detect-zeroes"] = "unmap"
            node["discard"] = "unmap"
            # no flush per metadata update (VMDK's made writing 10x slower): close() makes
            # the file durable once the daemon has written everything and exited
            node["cache"] = {"no-flush": True}
        export = {
            "type": "fuse",
            "id": "raw",
            "node-name": "disk",
            "mountpoint": self.path,
            "writable": self.writable,
        }
        return [
            which("setpriv"),
            "--pdeathsig",
            "TERM",
            "--",
            which("qemu-storage-daemon"),
            "--blockdev",
            json.dumps(node),
            "--export",
            json.dumps(export),
        ]

    def __enter__(self) -> RawView:
        remove_leftovers(self.workdir)
        self.folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=self.workdir))
        self.path = str(self.folder / "disk.raw")
        Path(self.path).touch()  # a FUSE export mounts over a file
        args = self._args()
        with open(self.folder / "daemon.log", "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + START_SECONDS
        while not os.path.ismount(self.path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                why = self.daemon_said()
                self.close()
                raise DeviceError(
                    f"The {self.disk.kind} disk {self.file} could not be opened"
                    f"{' (' + why + ')' if why else ''}."
                )
            time.sleep(0.05)
        return self

    def daemon_said(self) -> str:
        """The last line the daemon printed (its error), or ""."""
        if self.folder is None:
            return ""
        try:
            text = (self.folder / "daemon.log").read_text(errors="replace")
        except OSError:
            return ""
        return _last_line(text).removeprefix("qemu-storage-daemon: ")

    def close(self) -> None:
        """Stop the daemon by its PID (it flushes and unmounts), then remove the folder."""
        proc, self.proc = self.proc, None
        killed = False
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                killed = True
            self.returncode = proc.returncode
            if self.writable and proc.returncode == 0:
                fd = os.open(self.file, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        # a daemon that died without unmounting (a killed one's mount is dead: ismount cannot
        # stat it, so it is unmounted without asking)
        if self.path and (killed or os.path.ismount(self.path)):
            subprocess.run(["umount", "--lazy", self.path], capture_output=True, check=False)
        if self.folder is not None:
            for name in (self.path, str(self.folder / "daemon.log")):
                with contextlib.suppress(OSError):
                    os.unlink(name)
            with contextlib.suppress(OSError):
                self.folder.rmdir()
            self.folder = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

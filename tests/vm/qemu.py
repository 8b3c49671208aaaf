"""A qemu virtual machine for the VM tests: UEFI (OVMF; with Secure Boot enforced and
Microsoft's keys enrolled: "uefi-sb") or BIOS (SeaBIOS) firmware, virtio
disks with serial numbers, the serial console on a socket (read, matched, typed into) and the
human monitor on another (screendump, quit). Nothing here imports the appliance package."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# Debian's ovmf: the Secure Boot build (it needs SMM) and variables with Microsoft's keys
# enrolled and Secure Boot on, as on a PC sold with Windows
OVMF_CODE_SB = Path("/usr/share/OVMF/OVMF_CODE_4M.ms.fd")
OVMF_VARS_SB = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
FIRMWARES = ("uefi", "uefi-sb", "bios")


def accel() -> str:
    """kvm or tcg: APPLIANCE_VM_ACCEL, else kvm where /dev/kvm can be opened. Some nested
    hosts have a /dev/kvm that cannot run firmware or a kernel; tests/vm/run.sh probes it."""
    chosen = os.environ.get("APPLIANCE_VM_ACCEL", "auto")
    if chosen in ("kvm", "tcg"):
        return chosen
    return "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg"


@dataclass
class Drive:
    path: Path
    serial: str
    readonly: bool = False
    bootindex: int | None = None


@dataclass
class VM:
    """One qemu run. ``firmware`` is "uefi", "uefi-sb" or "bios"; with ``kernel`` the firmware
    loads that kernel and initrd with ``append`` (qemu -kernel), else it boots the first bootable
    drive."""

    workdir: Path
    name: str
    firmware: str
    drives: list[Drive]
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = ""
    memory_mib: int = 2048
    console: bytearray = field(default_factory=bytearray)
    started: float = 0.0

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.serial_path = self.workdir / f"{self.name}.serial.sock"
        self.monitor_path = self.workdir / f"{self.name}.monitor.sock"
        self.log_path = self.workdir / f"{self.name}.serial.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def argv(self) -> list[str]:
        kvm = accel() == "kvm"
        if self.firmware not in FIRMWARES:
            raise ValueError(f"unknown firmware {self.firmware}")
        secure = self.firmware == "uefi-sb"
        argv = [
            "qemu-system-x86_64",
            "-name",
            self.name,
            "-machine",
            # the Secure Boot firmware keeps its variables in SMM-protected flash
            "q35,smm=on" if secure else "q35",
            "-accel",
            "kvm" if kvm else "tcg,thread=multi,tb-size=512",
            "-cpu",
            "host" if kvm else "max",
            "-smp",
            "2",
            "-m",
            str(self.memory_mib),
            "-no-reboot",
            "-display",
            "none",
            "-vga",
            "std",
            "-chardev",
            f"socket,id=ser0,path={self.serial_path},server=on,wait=off",
            "-serial",
            "chardev:ser0",
            "-monitor",
            f"unix:{self.monitor_path},server=on,wait=off",
            "-nic",
            "none",
        ]
        if self.firmware in ("uefi", "uefi-sb"):
            code, variables = (OVMF_CODE_SB, OVMF_VARS_SB) if secure else (OVMF_CODE, OVMF_VARS)
            vars_copy = self.workdir / f"{self.name}.OVMF_VARS.fd"
            shutil.copyfile(variables, vars_copy)
            if secure:
                argv += [
                    "-global",
                    "driver=cfi.pflash01,property=secure,value=on",
                    "-global",
                    "ICH9-LPC.disable_s3=1",
                ]
            argv += [
                "-drive",
                f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                "-drive",
                f"if=pflash,format=raw,unit=1,file={vars_copy}",
            ]
        for number, drive in enumerate(self.drives):
            ro = ",readonly=on" if drive.readonly else ""
            argv += ["-drive", f"if=none,id=d{number},file={drive.path},format=raw{ro}"]
            boot = (
                f",bootindex={drive.bootindex}"
                if drive.bootindex is not None and self.kernel is None
                else ""
            )
            argv += ["-device", f"virtio-blk-pci,drive=d{number},serial={drive.serial}{boot}"]
        if self.kernel is not None:
            argv += [
                "-kernel",
                str(self.kernel),
                "-initrd",
                str(self.initrd),
                "-append",
                self.append,
            ]
        return argv

    # ------------------------------------------------------------------ life
    def start(self) -> None:
        for path in (self.serial_path, self.monitor_path):
            path.unlink(missing_ok=True)
        self.log_path.write_bytes(b"")
        self.started = time.monotonic()
        stderr = open(self.workdir / f"{self.name}.qemu.log", "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
        )
        stderr.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(self.serial_path))
                break
            except OSError:
                sock.close()
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"qemu did not start: {self.qemu_log()}") from None
                time.sleep(0.1)
        self._sock = sock
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._sock is not None
        with open(self.log_path, "ab") as log:
            while True:
                try:
                    data = self._sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                with self._lock:
                    self.console.extend(data)
                log.write(data)
                log.flush()

    def qemu_log(self) -> str:
        path = self.workdir / f"{self.name}.qemu.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_exit(self, timeout: float) -> int | None:
        """qemu's exit code once the guest powered off, or None after ``timeout`` seconds."""
        assert self._proc is not None
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(OSError):
                self.monitor("quit")
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        if self._sock is not None:
            self._sock.close()
        if self._reader is not None:
            self._reader.join(5)

    # ------------------------------------------------------------------ serial console
    def text(self, start: int = 0) -> str:
        with self._lock:
            return bytes(self.console[start:]).decode("utf-8", errors="replace")

    def expect(self, pattern: str, timeout: float, start: int = 0, flags: int = 0) -> re.Match[str]:
        """Wait until the serial output from byte ``start`` on matches ``pattern``."""
        regex = re.compile(pattern, flags)
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.text(start))
            if found:
                return found
            if not self.running():
                raise AssertionError(
                    f"{self.name}: qemu stopped before {pattern!r} appeared; "
                    f"serial log tail:\n{self.text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: {pattern!r} did not appear within "
                    f"{timeout:.0f} s; serial log tail:\n{self.text()[-3000:]}"
                )
            time.sleep(0.2)

    def send(self, text: str) -> None:
        assert self._sock is not None
        self._sock.sendall(text.encode())

    def mark(self) -> int:
        with self._lock:
            return len(self.console)

    def shell(self, command: str, timeout: float = 60) -> str:
        """Run ``command`` in the root shell on the serial console; its output."""
        token = f"{time.monotonic_ns():x}"
        start = self.mark()
        # the markers are split in the typed line so that its echo does not match them
        self.send(f"echo '==B{token}'==; {command}; echo '==E{token}'==\r")
        found = self.expect(rf"==B{token}==\r?\n(.*?)==E{token}==", timeout, start, re.DOTALL)
        return found.group(1).replace("\r", "")

    # ------------------------------------------------------------------ monitor
    def monitor(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.monitor_path))
            out = b""
            while b"(qemu)" not in out:
                out += sock.recv(4096)
            sock.sendall(command.encode() + b"\n")
            out = b""
            while out.count(b"(qemu)") < 1:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                out += chunk
            return out.decode(errors="replace")

    def screendump(self, png: Path) -> Path:
        """The VM's screen (its VGA console) as a PNG file."""
        ppm = png.with_suffix(".ppm")
        ppm.unlink(missing_ok=True)
        self.monitor(f"screendump {ppm}")
        deadline = time.monotonic() + 10
        while not ppm.exists() or ppm.stat().st_size == 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no screendump")
            time.sleep(0.1)
        time.sleep(0.3)
        ppm_to_png(ppm, png)
        ppm.unlink()
        return png


def ppm_to_png(ppm: Path, png: Path) -> None:
    """A binary PPM (P6, 8 bits) as a PNG, with nothing but zlib."""
    data = ppm.read_bytes()
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    pos += 1
    width, height = int(fields[1]), int(fields[2])
    pixels = data[pos : pos + width * height * 3]
    raw = b"".join(b"\0" + pixels[y * width * 3 : (y + 1) * width * 3] for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    png.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )

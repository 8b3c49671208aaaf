"""The network side of the VM tests (test_netboot_vm.py, test_netrepo_vm.py): a VM with a
network card on qemu's user network (the host's 127.0.0.1 is 10.0.2.2 for the guest; qemu's
own DHCP and TFTP serve the boot file), the boot folder `make netboot` makes, an unattended
job run to its power-off, and the figures file. Nothing here imports the appliance package;
the servers themselves are in tests/kit (webserve, fileservers)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from qemu import VM

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("APPLIANCE_VM_ARTIFACTS", ROOT / "build" / "vm-test"))
HOST = "10.0.2.2"  # the host's loopback, as qemu's user network shows it to the guest
FAILED = ("FAILED:", "cannot start:")


def record(name: str, value: object) -> None:
    """Keep a measured figure in build/vm-test/figures.json (as test_iso_vm.py does)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "figures.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures[name] = value
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def iso_path() -> Path:
    return Path(os.environ.get("APPLIANCE_ISO", ROOT / "build" / "iso" / "appliance.iso"))


OVMF_SECBOOT_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
OVMF_MS_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")  # Microsoft's keys, Secure Boot on


@dataclass
class NetVM(VM):
    """A VM with a virtio network card on qemu's user network. With ``tftp`` and
    ``bootfile`` qemu's DHCP offers that boot file from its own TFTP server; with
    ``netboot`` the card is the first thing the firmware boots: through the card's boot ROM
    (qemu's iPXE), or with ``firmware_pxe`` through the firmware's own PXE (OVMF), as on a
    PC. ``secure_boot`` (UEFI): OVMF with Microsoft's keys enrolled and Secure Boot
    enforced (SMM, a secure flash)."""

    tftp: Path | None = None
    bootfile: str | None = None
    netboot: bool = False
    firmware_pxe: bool = False
    secure_boot: bool = False

    def argv(self) -> list[str]:
        argv = super().argv()
        at = argv.index("-nic")
        netdev = "user,id=n0,net=10.0.2.0/24"
        if self.tftp is not None:
            netdev += f",tftp={self.tftp}"
        if self.bootfile is not None:
            netdev += f",bootfile={self.bootfile}"
        device = "virtio-net-pci,netdev=n0"
        if self.netboot:
            device += ",bootindex=0"
        if self.firmware_pxe:
            device += ",romfile="
        argv[at : at + 2] = ["-netdev", netdev, "-device", device]
        if self.secure_boot:
            assert self.firmware == "uefi"
            vars_copy = self.workdir / f"{self.name}.OVMF_VARS.fd"
            vars_copy.write_bytes(OVMF_MS_VARS.read_bytes())
            for n, arg in enumerate(argv):
                if arg.startswith("if=pflash,format=raw,unit=0,"):
                    argv[n] = f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_SECBOOT_CODE}"
                elif arg.startswith("if=pflash,format=raw,unit=1,"):
                    argv[n] = f"if=pflash,format=raw,unit=1,file={vars_copy}"
            machine = argv.index("-machine")
            argv[machine + 1] = "q35,smm=on"
            argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        return argv


def make_netboot(out: Path, url: str, job: str) -> str:
    """`make netboot`'s script (live-build/netboot.sh) into `out`, served at `url`; its
    output."""
    env = dict(os.environ, NETBOOT_OUT=str(out), NETBOOT_URL=url, NETBOOT_JOB=job)
    env["APPLIANCE_ISO"] = str(iso_path())
    env["NETBOOT_DEBS"] = str(ROOT / "build" / "netboot-debs")
    proc = subprocess.run(
        ["bash", str(ROOT / "live-build" / "netboot.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"netboot.sh failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def run_to_poweroff(
    vm: VM,
    job: str,
    timeout: float,
    *,
    milestones: dict[str, str] | None = None,
    expect_failure: bool = False,
) -> tuple[str, dict[str, float]]:
    """Start `vm` and wait until it powers itself off (the job succeeded) or, with
    `expect_failure`, until the job's failure sentence shows. Returns the serial log and,
    for each of `milestones` (name: a pattern), when it first showed on the serial console
    (seconds after qemu started, to a second)."""
    seen: dict[str, float] = {}
    patterns = {name: re.compile(text) for name, text in (milestones or {}).items()}
    vm.start()
    try:
        deadline = time.monotonic() + timeout
        code = None
        while time.monotonic() < deadline:
            code = vm.wait_exit(1)
            text = vm.text()
            for name, regex in patterns.items():
                if name not in seen and regex.search(text):
                    seen[name] = round(vm.elapsed(), 1)
            if code is not None:
                break
            if any(word in text for word in FAILED):
                time.sleep(3)  # the rest of the sentence
                if expect_failure:
                    return vm.text(), seen
                raise AssertionError(f"the unattended {job} failed:\n{vm.text()[-4000:]}")
        assert not expect_failure, f"the {job} did not fail:\n{vm.text()[-4000:]}"
        assert code == 0, (
            f"the {job} VM did not power off within {timeout:.0f} s "
            f"(exit {code}):\n{vm.text()[-4000:]}"
        )
        seen["poweroff"] = round(vm.elapsed(), 1)
        return vm.text(), seen
    finally:
        vm.stop()


def iso_boot_files(out: Path) -> dict[str, object]:
    """The ISO's kernel, initrd and default boot parameters (its GRUB menu's first entry,
    without GRUB's findiso=), for qemu -kernel, as test_iso_vm.py takes them."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["xorriso", "-osirrox", "on", "-indev", str(iso_path()),
         "-extract", "/live/vmlinuz", str(out / "vmlinuz"),
         "-extract", "/live/initrd.img", str(out / "initrd.img"),
         "-extract", "/boot/grub/grub.cfg", str(out / "grub.cfg")],
        check=True,
        capture_output=True,
    )  # fmt: skip
    for line in (out / "grub.cfg").read_text().splitlines():
        found = re.match(r"\s*linux\s+/live/vmlinuz\S*\s+(.*)$", line)
        if found:
            params = re.sub(r"\s*findiso=\S*", "", found.group(1)).strip()
            return {"kernel": out / "vmlinuz", "initrd": out / "initrd.img", "params": params}
    raise AssertionError("no linux line in the ISO's grub.cfg")

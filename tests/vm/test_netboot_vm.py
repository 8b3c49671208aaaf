"""A lab PC boots the appliance over the network (`make netboot`, docs/netboot.md) and
restores an image from a web server with no keyboard, then powers off.

The host: the real appliance saves a source disk (real filesystems, on a loop device) into a
repository folder; one nginx on 127.0.0.1 (a free port) serves that repository and the
folder `live-build/netboot.sh` makes from the ISO (kernel, initrd, squashfs, boot.ipxe with
the job in it). The guest: SeaBIOS boots the network card's boot ROM (qemu's iPXE), qemu's
own DHCP offers boot.ipxe from qemu's own TFTP server, iPXE fetches the kernel and initrd
over HTTP from 10.0.2.2 (the host's loopback), live-boot fetches the squashfs with fetch=,
and the unattended restore (appliance.repo=http://...) writes the VM's only disk, then
powers off. The host compares that disk with the source (table, fsck, file trees, identities,
boot areas). A second run takes the way of a UEFI PC with Secure Boot on: OVMF with
Microsoft's keys, its own PXE, Debian's signed shim and network GRUB over TFTP, into an
unattended verify. The boot times go to build/vm-test/figures.json.

Only runs with APPLIANCE_VM_TEST=1 (make vm-test sets it).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.cli import appliance
from kit.diskbuild import GPT_DISK_SIZE, build_gpt_disk, sparse_file
from kit.diskcompare import assert_equivalent, run
from kit.loops import Loops
from kit.webserve import nginx
from qemu import Drive
from vmnet import (
    ARTIFACTS,
    HOST,
    NetVM,
    iso_path,
    make_netboot,
    record,
    run_to_poweroff,
)

pytestmark = pytest.mark.skipif(
    os.environ.get("APPLIANCE_VM_TEST") != "1", reason="VM test: run it with `make vm-test`"
)

IMAGE = "lab-2026"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A source disk and a repository holding its image, both made on the host."""
    if not iso_path().exists():
        pytest.fail(f"{iso_path()} is missing; `make iso` builds it")
    base = tmp_path_factory.mktemp("netboot")
    loops = Loops(base)
    try:
        node = build_gpt_disk(loops, base / "src.img", seed=11)
        (base / "www").mkdir()
        appliance("save", node, "--repo", str(base / "www" / "images"), "--image", IMAGE,
                  "--create", timeout=1800)  # fmt: skip
    finally:
        loops.cleanup()
    yield {"src": base / "src.img", "www": base / "www"}


def test_lab_pc_boots_over_the_network_and_restores(
    saved: dict[str, Path], tmp_path: Path, loops: Loops
) -> None:
    art = ARTIFACTS / "netboot"
    art.mkdir(parents=True, exist_ok=True)
    www = saved["www"]
    with nginx(www, tmp_path, autoindex=False) as base:
        port = base.rsplit(":", 1)[1]
        url = f"http://{HOST}:{port}"
        job = (
            f"appliance.job=restore appliance.repo={url}/images/ appliance.image={IMAGE} "
            "appliance.target=internal appliance.then=poweroff"
        )
        out = www / "appliance"
        made = make_netboot(out, f"{url}/appliance", job)
        (art / "make-netboot.txt").write_text(made)
        script = (out / "boot.ipxe").read_text()
        assert f"set job {job}" in script, script
        assert f"fetch={url}/appliance/live/filesystem.squashfs" in script, script
        for name in ("undionly.kpxe", "ipxe.efi", "shimx64.efi", "grubx64.efi", "pxelinux.0",
                     "ldlinux.c32", "grub/grub.cfg", "pxelinux.cfg/default"):  # fmt: skip
            assert (out / name).stat().st_size > 0, name

        target = sparse_file(tmp_path, "lab-pc.img", GPT_DISK_SIZE)
        vm = NetVM(
            art,
            "netboot-restore",
            "bios",
            [Drive(target, "LAB-PC-DISK")],
            memory_mib=3072,  # the squashfs is fetched into RAM
            tftp=out,
            bootfile="boot.ipxe",
            netboot=True,
        )
        log, times = run_to_poweroff(
            vm,
            "restore",
            2400,
            # (the ISO's "quiet" keeps the kernel and live-boot off the serial console)
            milestones={"job": r"appliance: unattended restore"},
        )
    (art / "serial.log").write_text(log)
    for name, seconds in times.items():
        record(f"netboot.bios.boot_to_{name}_s", seconds)
    assert "unattended restore done" in log, log[-3000:]
    # the appliance chose the only disk by the lab rule and named it before writing
    assert "LAB-PC-DISK" in log, log[-3000:]

    src = loops.attach(saved["src"])
    dst = loops.attach(target)
    assert_equivalent(src, dst)
    tables = {}
    for name, node in (("src", src), ("tgt", dst)):
        table = json.loads(run("sfdisk", "--json", node).stdout)["partitiontable"]
        table.pop("device")
        for part in table["partitions"]:
            part["node"] = re.sub(r"^/dev/loop\d+", "", part["node"])
        tables[name] = table
    assert tables["src"] == tables["tgt"]


def test_uefi_pc_with_secure_boot_boots_over_the_network_and_verifies(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    """UEFI with Microsoft's keys enrolled and Secure Boot enforced, the firmware's own PXE
    (no iPXE ROM), as on a PC: shimx64.efi, grubx64.efi, GRUB's menu (grub/grub.cfg), the
    kernel (Debian's, signed) and the initrd over TFTP, the squashfs over HTTP, then an
    unattended verify of the image on the web server."""
    art = ARTIFACTS / "netboot"
    art.mkdir(parents=True, exist_ok=True)
    www = tmp_path / "www"
    www.mkdir()
    (www / "images").symlink_to(saved["www"] / "images")
    with nginx(www, tmp_path, autoindex=False) as base:
        url = f"http://{HOST}:{base.rsplit(':', 1)[1]}"
        job = (
            f"appliance.job=verify appliance.repo={url}/images/ appliance.image={IMAGE} "
            "appliance.then=poweroff"
        )
        made = make_netboot(www / "appliance", f"{url}/appliance", job)
        (art / "make-netboot-uefi.txt").write_text(made)
        grub = www / "appliance" / "grub" / "grub.cfg"
        assert f'set job="{job}"' in grub.read_text()
        # the kernel's own Secure Boot line on the serial console (the ISO boots "quiet")
        grub.write_text(grub.read_text().replace(" quiet ", " quiet loglevel=6 "))
        vm = NetVM(
            art,
            "netboot-uefi-sb",
            "uefi",
            [],
            memory_mib=3072,
            tftp=www / "appliance",
            bootfile="shimx64.efi",
            netboot=True,
            firmware_pxe=True,
            secure_boot=True,
        )
        log, times = run_to_poweroff(
            vm,
            "verify",
            2400,
            milestones={
                "grub": r"Welcome to GRUB",
                "kernel": r"Linux version",
                "job": r"appliance: unattended verify",
            },
        )
    (art / "uefi-sb.serial.log").write_text(log)
    for name, seconds in times.items():
        record(f"netboot.uefi_secure_boot.boot_to_{name}_s", seconds)
    # at loglevel=6 the console shows the kernel's notice "Kernel is locked down from EFI
    # Secure Boot" (it found Secure Boot enforced), not its info line "Secure boot enabled"
    assert re.search(r"[Ss]ecure ?boot enabled|locked down from EFI Secure Boot", log), log[-3000:]
    assert "unattended verify done" in log, log[-3000:]

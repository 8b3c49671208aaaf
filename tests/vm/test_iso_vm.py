"""The ISO in a VM (`make vm-test`): with UEFI (OVMF), UEFI with Secure Boot enforced
(Microsoft's keys enrolled) and BIOS (SeaBIOS).

Each firmware gets fresh copies of three virtio disks with serial numbers: SRC-DISK (GPT: FAT32
ESP, ext4, NTFS, swap, built on the host), TGT-DISK (blank) and REPO-DISK (GPT, ext4 labelled
IMAGES), and the ISO itself as a read-only virtio disk (APPLIANCE-STICK), as if written to a
USB stick.

- test_efi_boot_chain_is_signed: on the host, the ISO's EFI system partition holds Debian's
  shim (signed by Microsoft) as EFI/boot/bootx64.efi, Debian's signed GRUB beside it, and a
  grub.cfg that finds the ISO; the kernel is Debian's signed one.
- test_boots_to_tui: the firmware boots the ISO through its own boot menu (isolinux, or shim
  and GRUB); the serial console's root shell (the test-only kernel parameter
  appliance_test_serial_shell=1, written into a copy of the ISO's menus: bootmenu.py) reads
  tty1's screen (/dev/vcsu1) until the appliance shows on it, checks that nothing was mounted
  or swapped on, that `appliance disks` names the stick "this boot stick" and a clone onto
  it is refused (exit 5), and that the disks are byte-for-byte unchanged after the boot.
  With Secure Boot: the kernel reports it on and is locked down, and refused nothing the
  appliance did.
- test_serial_console_asks_for_login: without that parameter the serial console is a login
  prompt that lets no one in (root has no password), not a root shell.
- test_unattended_save_restore: qemu -kernel/-initrd (taken from the ISO) with the ISO's own
  boot parameters plus appliance.job=save, then appliance.job=restore; the VM powers itself
  off after each; the host then checks that the target matches the source (table, fsck,
  file trees, identities, boot areas).

Only runs with APPLIANCE_VM_TEST=1 (make vm-test sets it). Logs, screen dumps and timings go
to build/vm-test/.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bootmenu import SERIAL_SHELL, extract, grub_params, with_params
from kit.diskbuild import GPT_DISK_SIZE, MiB, build_gpt_disk, sparse_file
from kit.diskcompare import assert_equivalent, mounted, partition_nodes, run
from kit.filetrees import digests
from kit.loops import Loops
from qemu import VM, Drive

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("APPLIANCE_VM_ARTIFACTS", ROOT / "build" / "vm-test"))
FIRMWARES = ["uefi", "bios"]
# the boot through the ISO's own menus also runs with Secure Boot enforced
BOOT_FIRMWARES = ["uefi", "bios", "uefi-sb"]
PROMPT = r"root@appliance:~# "

pytestmark = pytest.mark.skipif(
    os.environ.get("APPLIANCE_VM_TEST") != "1", reason="VM test: run it with `make vm-test`"
)


def record(name: str, value: object) -> None:
    """Keep a measured figure in build/vm-test/figures.json."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "figures.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures[name] = value
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="session")
def iso() -> Path:
    path = Path(os.environ.get("APPLIANCE_ISO", ROOT / "build" / "iso" / "appliance.iso"))
    if not path.exists():
        pytest.fail(f"{path} is missing; `make iso` builds it")
    return path


@pytest.fixture(scope="session")
def boot_files(iso: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The ISO's kernel, initrd and default boot parameters (its GRUB menu's first entry)."""
    out = tmp_path_factory.mktemp("boot")
    run("xorriso", "-osirrox", "on", "-indev", iso,
        "-extract", "/live/vmlinuz", out / "vmlinuz",
        "-extract", "/live/initrd.img", out / "initrd.img",
        "-extract", "/boot/grub/grub.cfg", out / "grub.cfg")  # fmt: skip
    # findiso=${iso_path} is a GRUB variable, meaningless outside GRUB
    params = re.sub(r"\s*findiso=\S*", "", grub_params((out / "grub.cfg").read_text())).strip()
    assert SERIAL_SHELL not in params, "the ISO itself opens a root shell on the serial line"
    return {"kernel": out / "vmlinuz", "initrd": out / "initrd.img", "params": params}


@pytest.fixture(scope="session")
def shell_iso(iso: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the ISO whose boot menus add the test-only serial root shell parameter."""
    return with_params(iso, tmp_path_factory.mktemp("shell-iso") / "appliance.iso", SERIAL_SHELL)


@pytest.fixture(scope="session")
def master_disks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The source (real filesystems) and the blank repository disk, built once."""
    base = tmp_path_factory.mktemp("disks")
    loops = Loops(base)
    try:
        build_gpt_disk(loops, base / "src.img", seed=7)
        repo = sparse_file(base, "repo.img", 1024 * MiB)
        node = loops.attach(repo)
        run("sfdisk", "--quiet", node, input="label: gpt\nstart=2048, type=linux, name=images\n")
        run("partx", "-u", node)
        run("mkfs.ext4", "-q", "-F", "-L", "IMAGES", f"{node}p1")
    finally:
        loops.cleanup()
    os.sync()
    yield {"src": base / "src.img", "repo": repo}


def _disks(master: dict[str, Path], workdir: Path) -> dict[str, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("src", "repo"):
        out[name] = workdir / f"{name}.img"
        run("cp", "--sparse=always", master[name], out[name])
    out["tgt"] = sparse_file(workdir, "tgt.img", GPT_DISK_SIZE)
    return out


def _drives(iso: Path, disks: dict[str, Path]) -> list[Drive]:
    return [
        Drive(iso, "APPLIANCE-STICK", readonly=True, bootindex=0),
        Drive(disks["src"], "SRC-DISK"),
        Drive(disks["tgt"], "TGT-DISK"),
        Drive(disks["repo"], "REPO-DISK"),
    ]


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MiB):
            h.update(block)
    return h.hexdigest()


def _repo_files(loops: Loops, disk: Path) -> dict[str, tuple[str, int]]:
    """Every file of the repository disk's filesystem (read-only), with its hash."""
    node = loops.attach(disk, read_only=True)
    try:
        with mounted(partition_nodes(node)[1], "ext4") as root:
            return digests(root)
    finally:
        loops.detach(node)


SCREEN = (
    'python3 -c \'h=open("/dev/vcsa1","rb").read(4);r,c=h[0],h[1];'
    'd=open("/dev/vcsu1","rb").read().decode("utf-32-le");'
    'print("\\n".join(d[i*c:(i+1)*c].rstrip() for i in range(r)))\''
)
FALLBACK = "could not start"


@pytest.mark.parametrize("firmware", BOOT_FIRMWARES)
def test_boots_to_tui(
    firmware: str, shell_iso: Path, master_disks: dict[str, Path], tmp_path: Path
) -> None:
    art = ARTIFACTS / firmware
    art.mkdir(parents=True, exist_ok=True)
    disks = _disks(master_disks, tmp_path / "disks")
    before = {name: _digest(path) for name, path in disks.items()}
    vm = VM(art, "boot", firmware, _drives(shell_iso, disks))
    vm.start()
    try:
        # under TCG the Secure Boot firmware's SMM (each EFI variable access systemd makes
        # traps into it) is far slower than the rest
        vm.expect(PROMPT, 900 if firmware == "uefi-sb" else 240)
        shell_at = vm.elapsed()
        record(f"{firmware}.boot_to_serial_shell_s", round(shell_at, 1))
        screen = ""
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            screen = vm.shell(SCREEN)
            if FALLBACK in screen or _looks_like_tui(screen):
                break
            time.sleep(1)
        tty1_at = vm.elapsed()
        record(f"{firmware}.boot_to_tty1_app_s", round(tty1_at, 1))
        shows = (
            "fallback shell"
            if FALLBACK in screen
            else "TUI"
            if _looks_like_tui(screen)
            else "nothing recognisable"
        )
        record(f"{firmware}.tty1_shows", shows)
        program = vm.shell("ps -o args= -t tty1")
        listed = False
        if shows == "TUI":  # the TUI lists the machine's disks by serial number
            deadline = time.monotonic() + 120
            while not (listed := "SRC-DISK" in screen) and time.monotonic() < deadline:
                time.sleep(2)
                screen = vm.shell(SCREEN)
            record(
                f"{firmware}.boot_to_tui_lists_disks_s", round(vm.elapsed(), 1) if listed else None
            )
        (art / "tty1.txt").write_text(screen)
        vm.screendump(art / "tty1.png")
        if FALLBACK in screen:  # keep the reason with the artifacts
            (art / "appliance.log").write_text(vm.shell("tail -40 /var/log/appliance.log"))

        disks_out = vm.shell("appliance disks")
        (art / "appliance-disks.txt").write_text(disks_out)
        for serial in ("SRC-DISK", "TGT-DISK", "REPO-DISK"):
            assert serial in disks_out, disks_out
        # the ISO is listed as the boot stick, not as an unreadable "mac" table
        stick_block = next(b for b in disks_out.split("\n\n") if "APPLIANCE-STICK" in b)
        assert "this boot stick" in stick_block, disks_out
        assert "Disks that cannot be read" not in disks_out, disks_out
        # nothing of the machine's disks is mounted, no swap is on (SRC-DISK has a swap
        # partition), and the stick the appliance booted from is refused as a target
        mounts = vm.shell("findmnt -rn -o SOURCE,TARGET")
        assert not re.search(r"/dev/vd[b-d]", mounts), mounts
        assert vm.shell("swapon --show --noheadings").strip() == ""
        stick = vm.shell("findmnt -n -o SOURCE /run/live/medium").strip()
        assert stick.startswith("/dev/vda"), stick
        refusal = vm.shell("appliance clone /dev/vdb /dev/vda --yes --dry-run 2>&1; echo exit=$?")
        assert "is the stick this appliance booted from" in refusal, refusal
        assert "exit=5" in refusal, refusal
        assert "tty2" in vm.shell("ps -o tty= -C bash | sort -u")  # the root shell on tty2
        firmware_files = vm.shell("ls /lib/firmware").split()
        record(f"{firmware}.firmware_entries", len(firmware_files))
        for wanted in ("rtl_nic", "bnx2", "bnx2x", "brcm", "qlogic", "ath10k", "intel-ucode"):
            assert wanted in firmware_files, f"no /lib/firmware/{wanted}: {firmware_files}"
        assert any(name.startswith("iwlwifi-") for name in firmware_files), firmware_files
        if firmware == "uefi-sb":
            _assert_secure_boot(vm, art)
        vm.send("poweroff\r")
        assert vm.wait_exit(90) is not None, "the VM did not power off"
    finally:
        vm.stop()
    after = {name: _digest(path) for name, path in disks.items()}
    assert after == before, "booting the appliance changed a disk"
    assert FALLBACK not in screen, (
        f"tty1 shows the fallback shell, not the TUI (is `appliance tui` in the image?):\n{screen}"
    )
    assert "-m tui" in program, f"tty1 runs {program!r}, not the TUI"
    assert shows == "TUI" and listed, f"the TUI on tty1 does not list SRC-DISK:\n{screen}"


EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"


def _assert_secure_boot(vm: VM, art: Path) -> None:
    """The firmware enforced Secure Boot, the kernel knows it and is locked down, and the
    lockdown refused nothing while the appliance started (the TUI is up by now) nor refuses
    the modules its tools need (Debian's are signed)."""
    # SecureBoot-<EFI global GUID>: 4 bytes of attributes, then 1 when Secure Boot is on
    state = vm.shell(f"od -An -t u1 /sys/firmware/efi/efivars/SecureBoot-{EFI_GLOBAL}").split()
    assert state and state[-1] == "1", f"the firmware says Secure Boot is off: {state}"
    dmesg = vm.shell("dmesg")
    (art / "dmesg.txt").write_text(dmesg)
    assert "Secure boot enabled" in dmesg, "the kernel does not report Secure Boot on"
    lockdown = vm.shell("cat /sys/kernel/security/lockdown").strip()
    record("uefi-sb.lockdown", lockdown)
    assert "[integrity]" in lockdown or "[confidentiality]" in lockdown, lockdown
    # (NTFS is ntfs-3g over FUSE: Debian 12's kernel has no ntfs3 module)
    loaded = vm.shell("modprobe -a loop fuse cifs nfs && echo MODULES-OK")
    assert "MODULES-OK" in loaded, f"a module the appliance needs was refused: {loaded}"
    # the kernel's own resume-from-hibernation check at boot is refused by design; the
    # appliance never hibernates or resumes
    refused = [
        line
        for line in vm.shell("dmesg").splitlines()
        if "is restricted" in line and "hibernation is restricted" not in line
    ]
    assert not refused, "the kernel lockdown refused:\n" + "\n".join(refused)


def _looks_like_tui(screen: str) -> bool:
    """A full-screen app: no login text or shell prompt, and rows drawn on."""
    drawn = [row for row in screen.splitlines() if row.strip()]
    return (
        not re.search(r"root@appliance|login:|ABSOLUTELY NO WARRANTY", screen) and len(drawn) >= 5
    )


def _job(
    vm_dir: Path,
    name: str,
    firmware: str,
    iso: Path,
    disks: dict[str, Path],
    boot: dict[str, object],
    keys: str,
    timeout: float = 480,
) -> str:
    vm = VM(
        vm_dir,
        name,
        firmware,
        _drives(iso, disks),
        kernel=boot["kernel"],  # type: ignore[arg-type]
        initrd=boot["initrd"],
        append=f"{boot['params']} {keys}",
    )  # type: ignore[arg-type]
    vm.start()
    try:
        deadline = time.monotonic() + timeout
        code = None
        while time.monotonic() < deadline:
            code = vm.wait_exit(2)
            if code is not None:
                break
            if "FAILED:" in vm.text() or "cannot start:" in vm.text():
                time.sleep(2)
                raise AssertionError(f"the unattended {name} failed:\n{vm.text()[-4000:]}")
        assert code == 0, (
            f"the {name} VM did not power off within {timeout:.0f} s "
            f"(exit {code}):\n{vm.text()[-4000:]}"
        )
        record(f"{firmware}.{name}_boot_to_poweroff_s", round(vm.elapsed(), 1))
        return vm.text()
    finally:
        vm.stop()


@pytest.mark.parametrize("firmware", FIRMWARES)
def test_unattended_save_restore(
    firmware: str,
    iso: Path,
    boot_files: dict[str, object],
    master_disks: dict[str, Path],
    tmp_path: Path,
    loops: Loops,
) -> None:
    art = ARTIFACTS / firmware
    disks = _disks(master_disks, tmp_path / "disks")
    src_digest = _digest(disks["src"])
    common = "appliance.repo=LABEL=IMAGES appliance.image=vmtest appliance.then=poweroff"

    log = _job(
        art,
        "save",
        firmware,
        iso,
        disks,
        boot_files,
        f"appliance.job=save appliance.source=serial:SRC-DISK {common}",
    )
    assert "unattended save done: Saved" in log
    assert _digest(disks["src"]) == src_digest, "the save changed its source"

    repo_before = _repo_files(loops, disks["repo"])
    log = _job(
        art,
        "restore",
        firmware,
        iso,
        disks,
        boot_files,
        f"appliance.job=restore appliance.target=serial:TGT-DISK {common}",
    )
    assert "will be ERASED" in log and "unattended restore done" in log
    # the restore adds its summary line under logs/ (the lab's record) and changes nothing else
    repo_after = _repo_files(loops, disks["repo"])
    added = sorted(set(repo_after) - set(repo_before))
    assert [name for name in added if not name.startswith("logs/")] == [], added
    assert {k: v for k, v in repo_after.items() if k in repo_before} == repo_before, (
        "the restore changed a file of the repository"
    )
    assert _digest(disks["src"]) == src_digest

    src = loops.attach(disks["src"])
    dst = loops.attach(disks["tgt"])
    assert_equivalent(src, dst)
    sfdisk = {
        n: json.loads(run("sfdisk", "--json", node).stdout)["partitiontable"]
        for n, node in (("src", src), ("tgt", dst))
    }
    for table in sfdisk.values():
        table.pop("device")
        for part in table["partitions"]:
            part["node"] = re.sub(r"^/dev/loop\d+", "", part["node"])
    assert sfdisk["src"] == sfdisk["tgt"]


def test_efi_boot_chain_is_signed(iso: Path, tmp_path: Path) -> None:
    """The ISO's EFI system partition starts Debian's signed chain: shim signed by Microsoft
    as the removable-media loader, Debian's signed GRUB beside it, the kernel signed by Debian."""
    esp = extract(iso, "/boot/grub/efi.img", tmp_path / "efi.img")
    files = {}
    for name in ("EFI/boot/bootx64.efi", "EFI/boot/grubx64.efi", "boot/grub/grub.cfg"):
        out = tmp_path / name.replace("/", "_")
        run("mcopy", "-n", "-i", esp, f"::{name}", out)
        files[name] = out.read_bytes()
    shim, grub = files["EFI/boot/bootx64.efi"], files["EFI/boot/grubx64.efi"]
    assert shim[:2] == b"MZ" and grub[:2] == b"MZ"
    assert b"Microsoft Corporation UEFI CA 2011" in shim, "bootx64.efi is not a signed shim"
    assert b"Debian Secure Boot CA" in shim, "bootx64.efi does not trust Debian's key"
    assert b"Debian Secure Boot Signer" in grub, "grubx64.efi is not Debian's signed GRUB"
    assert b"/.disk/info" in files["boot/grub/grub.cfg"]
    kernel = extract(iso, "/live/vmlinuz", tmp_path / "vmlinuz").read_bytes()
    assert b"Debian Secure Boot Signer" in kernel, "the kernel is not Debian's signed one"


def test_serial_console_asks_for_login(
    iso: Path, boot_files: dict[str, object], master_disks: dict[str, Path], tmp_path: Path
) -> None:
    """The ISO's own boot parameters: the serial console is a login prompt, and root cannot
    log in there (no password), so the cable gives no shell."""
    art = ARTIFACTS / "serial"
    disks = _disks(master_disks, tmp_path / "disks")
    vm = VM(
        art,
        "login",
        "bios",
        _drives(iso, disks),
        kernel=boot_files["kernel"],  # type: ignore[arg-type]
        initrd=boot_files["initrd"],  # type: ignore[arg-type]
        append=str(boot_files["params"]),
    )
    vm.start()
    try:
        vm.expect(r"appliance login: ", 240)
        record("bios.boot_to_serial_login_s", round(vm.elapsed(), 1))
        start = vm.mark()
        vm.send("root\r")
        vm.expect(r"Password: ", 30, start)
        vm.send("\r")
        vm.expect(r"Login incorrect", 60, start)
        vm.expect(r"appliance login: ", 60, start)
        assert PROMPT not in vm.text(), "the serial console gave a root shell"
    finally:
        vm.stop()


def _cpio_member_size(archive: bytes, name: bytes) -> int | None:
    """The size of ``name`` in an uncompressed newc cpio (the initrd's early part), or None."""
    at = archive.find(name + b"\0")
    if at < 110 or archive[at - 110 : at - 104] != b"070701":
        return None
    return int(archive[at - 110 + 54 : at - 110 + 62], 16)


def test_initrd_carries_every_cpus_microcode(boot_files: dict[str, object]) -> None:
    """The initrd's early microcode is for every Intel and AMD CPU, not only the build host's
    (hooks/normal/0550-microcode.hook.chroot)."""
    initrd = Path(str(boot_files["initrd"])).read_bytes()
    intel = _cpio_member_size(initrd, b"kernel/x86/microcode/GenuineIntel.bin")
    amd = _cpio_member_size(initrd, b"kernel/x86/microcode/AuthenticAMD.bin")
    record("initrd_mib", round(len(initrd) / MiB, 1))
    record("initrd_microcode_kib", {"intel": intel and intel // 1024, "amd": amd and amd // 1024})
    assert intel is not None and intel > 4 * MiB, f"Intel microcode in the initrd: {intel} bytes"
    assert amd is not None and amd > 64 * 1024, f"AMD microcode in the initrd: {amd} bytes"

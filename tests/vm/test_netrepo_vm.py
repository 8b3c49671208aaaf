"""Repositories on SMB and NFS file servers, from the live system (its kernel has cifs and
nfs; this machine's kernel has neither a cifs client nor an nfsd, so these run in the VM).

The host runs, as the test's own processes on 127.0.0.1 and free ports (tests/kit/
fileservers.py): smbd with its own smb.conf, one share ``images`` and one user with a
password made here; and NFS-Ganesha (userspace NFS 4, no kernel nfsd) exporting the same
folder as /images. The guest reaches both at 10.0.2.2 (qemu's user network).

- test_save_to_smb_then_restore_from_nfs: an unattended save of SRC-DISK to
  smb://10.0.2.2:PORT/images/lab, the user name and password read from a credentials file on
  a partition labelled CREDS (appliance.credentials=LABEL=CREDS:/smb.cred); the host checks
  the image is in the share's folder and complete. Then an unattended restore from
  nfs://10.0.2.2:PORT/images/lab onto TGT-DISK; the host compares TGT-DISK with the source.
- test_smb_wrong_password: the same with a wrong password: the serial console shows the one
  sentence naming the server, nothing powers off, and the password is nowhere on it.

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
from kit.diskbuild import GPT_DISK_SIZE, MiB, build_gpt_disk, sparse_file
from kit.diskcompare import assert_equivalent, run
from kit.fileservers import SMB_USER, FileServer, ganesha, samba
from kit.loops import Loops
from qemu import VM, Drive
from vmnet import ARTIFACTS, HOST, NetVM, iso_boot_files, iso_path, record, run_to_poweroff

pytestmark = pytest.mark.skipif(
    os.environ.get("APPLIANCE_VM_TEST") != "1", reason="VM test: run it with `make vm-test`"
)

PASSWORD = "Corr3ct-h0rse"
WRONG = "not-the-Passw0rd"
IMAGE = "pc-01"


def _credentials_disk(loops: Loops, folder: Path, name: str, password: str) -> Path:
    """A small disk with one ext4 partition labelled CREDS holding smb.cred (root's, 0600)."""
    path = sparse_file(folder, f"{name}.img", 64 * MiB)
    node = loops.attach(path)
    run("sfdisk", "--quiet", node, input="label: gpt\nstart=2048, type=linux, name=creds\n")
    run("partx", "-u", node)
    run("mkfs.ext4", "-q", "-F", "-L", "CREDS", f"{node}p1")
    mnt = folder / f"{name}.mnt"
    mnt.mkdir()
    run("mount", f"{node}p1", mnt)
    try:
        cred = mnt / "smb.cred"
        cred.write_text(f"username={SMB_USER}\npassword={password}\n")
        cred.chmod(0o600)
    finally:
        run("umount", mnt)
    loops.detach(node)
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """The servers, the source disk and two credentials disks (right and wrong password)."""
    if not iso_path().exists():
        pytest.fail(f"{iso_path()} is missing; `make iso` builds it")
    base = tmp_path_factory.mktemp("netrepo")
    loops = Loops(base)
    try:
        build_gpt_disk(loops, base / "src.img", seed=23)
        good = _credentials_disk(loops, base, "creds", PASSWORD)
        bad = _credentials_disk(loops, base, "badcreds", WRONG)
    finally:
        loops.cleanup()
    boot = iso_boot_files(base / "boot")
    servers = base / "servers"
    with (
        samba(servers, "images", PASSWORD) as smb,
        ganesha(servers, "images", smb.folder) as nfs,
    ):
        yield {
            "src": base / "src.img",
            "creds": good,
            "badcreds": bad,
            "boot": boot,
            "smb": smb,
            "nfs": nfs,
        }


def _vm(art: Path, name: str, lab: dict[str, object], drives: list[Drive], keys: str) -> VM:
    boot = lab["boot"]
    assert isinstance(boot, dict)
    return NetVM(
        art,
        name,
        "bios",
        [Drive(iso_path(), "APPLIANCE-STICK", readonly=True), *drives],
        kernel=boot["kernel"],
        initrd=boot["initrd"],
        append=f"{boot['params']} {keys}",
    )


def _copy(src: object, folder: Path, name: str) -> Path:
    assert isinstance(src, Path)
    out = folder / name
    run("cp", "--sparse=always", src, out)
    return out


def test_save_to_smb_then_restore_from_nfs(
    lab: dict[str, object], tmp_path: Path, loops: Loops
) -> None:
    art = ARTIFACTS / "netrepo"
    smb, nfs = lab["smb"], lab["nfs"]
    assert isinstance(smb, FileServer) and isinstance(nfs, FileServer)
    src = _copy(lab["src"], tmp_path, "src.img")
    creds = _copy(lab["creds"], tmp_path, "creds.img")
    save_keys = (
        f"appliance.job=save appliance.repo=smb://{HOST}:{smb.port}/images/lab "
        f"appliance.image={IMAGE} appliance.source=serial:SRC-DISK "
        "appliance.credentials=LABEL=CREDS:/smb.cred appliance.then=poweroff"
    )
    vm = _vm(art, "smb-save", lab, [Drive(src, "SRC-DISK"), Drive(creds, "CREDS-DISK")],
             save_keys)  # fmt: skip
    log, times = run_to_poweroff(vm, "save", 2400, milestones={"job": "appliance: unattended"})
    (art / "smb-save.serial.txt").write_text(log)
    record("netrepo.smb_save_boot_to_poweroff_s", times["poweroff"])
    assert "unattended save done: Saved" in log, log[-3000:]
    assert PASSWORD not in log
    # the image is in the share's folder on the server, complete, read by the host's appliance
    listed = json.loads(appliance("images", "--repo", str(smb.folder / "lab"), "--json").stdout)
    assert IMAGE in json.dumps(listed), listed

    tgt = sparse_file(tmp_path, "tgt.img", GPT_DISK_SIZE)
    restore_keys = (
        f"appliance.job=restore appliance.repo=nfs://{HOST}:{nfs.port}/images/lab "
        f"appliance.image={IMAGE} appliance.target=serial:TGT-DISK appliance.then=poweroff"
    )
    vm = _vm(art, "nfs-restore", lab, [Drive(tgt, "TGT-DISK")], restore_keys)
    log, times = run_to_poweroff(vm, "restore", 2400)
    (art / "nfs-restore.serial.txt").write_text(log)
    record("netrepo.nfs_restore_boot_to_poweroff_s", times["poweroff"])
    assert "unattended restore done" in log, log[-3000:]

    a, b = loops.attach(src), loops.attach(tgt)
    assert_equivalent(a, b)
    tables = []
    for node in (a, b):
        table = json.loads(run("sfdisk", "--json", node).stdout)["partitiontable"]
        table.pop("device")
        for part in table["partitions"]:
            part["node"] = re.sub(r"^/dev/loop\d+", "", part["node"])
        tables.append(table)
    assert tables[0] == tables[1]


def test_smb_wrong_password(lab: dict[str, object], tmp_path: Path) -> None:
    art = ARTIFACTS / "netrepo"
    smb = lab["smb"]
    assert isinstance(smb, FileServer)
    creds = _copy(lab["badcreds"], tmp_path, "badcreds.img")
    keys = (
        f"appliance.job=verify appliance.repo=smb://{HOST}:{smb.port}/images/lab "
        f"appliance.image={IMAGE} appliance.credentials=LABEL=CREDS:/smb.cred "
        "appliance.then=poweroff"
    )
    vm = _vm(art, "smb-wrong-password", lab, [Drive(creds, "CREDS-DISK")], keys)
    log, _ = run_to_poweroff(vm, "verify", 1800, expect_failure=True)
    (art / "smb-wrong-password.serial.txt").write_text(log)
    failed = [line for line in log.splitlines() if "the unattended verify FAILED:" in line]
    assert failed, log[-3000:]
    sentence = failed[0]
    assert f"{HOST} port {smb.port}" in sentence, sentence
    assert "wrong user name or password" in sentence, sentence
    assert "nothing powers off" in log, log[-3000:]
    assert WRONG not in log and PASSWORD not in log

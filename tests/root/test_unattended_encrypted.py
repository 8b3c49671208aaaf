"""Unattended save and restore with an encrypted repository: the passphrase comes from a
file on a labelled partition (appliance.passphrase_file=LABEL=...:/FILE), never from the
kernel command line; without it the job stops with its sentence."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kit.diskbuild import MiB, sparse_file
from kit.diskcompare import assert_equivalent, mounted, run
from kit.loops import Loops
from kit.plaindisk import PLAIN_DISK_SIZE, build_plain_disk
from kit.secrets import passphrase_file

from appliance.cli import unattended
from appliance.cli.unattended import Console
from appliance.repo import keyring
from appliance.repo import mount as repomount

pytestmark = pytest.mark.root

PASSPHRASE = "unattended lab passphrase 42"


def _ext4_disk(loops: Loops, path: Path, label: str, size: int) -> str:
    sparse_file(path.parent, path.name, size)
    node = loops.attach(path)
    run("sfdisk", "--quiet", node, input="label: gpt\nstart=2048, type=linux\n")
    run("partx", "-u", node)
    part = f"{node}p1"
    run("mkfs.ext4", "-q", "-F", "-L", label, part)
    return part


def _job(line: str) -> tuple[int, str]:
    out = io.StringIO()
    code = unattended.run(line, Console(out, []), power_action=lambda action: None)
    return code, out.getvalue()


def test_unattended_encrypted_save_and_restore(
    loops: Loops, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unattended.time, "sleep", lambda s: None)
    monkeypatch.setattr(repomount, "RUN_DIR", tmp_path / "run")
    monkeypatch.delenv(keyring.ENV_PASSPHRASE, raising=False)
    keyring.forget_all()
    tag = uuid.uuid4().hex[:8].upper()
    repo_label, key_label = f"R{tag}", f"K{tag}"
    src = build_plain_disk(loops, tmp_path / "src.img")
    dst = loops.attach(sparse_file(tmp_path, "dst.img", PLAIN_DISK_SIZE))
    repo_part = _ext4_disk(loops, tmp_path / "repo.img", repo_label, 400 * MiB)
    key_part = _ext4_disk(loops, tmp_path / "key.img", key_label, 16 * MiB)
    with mounted(key_part, "ext4", readonly=False) as root:
        passphrase_file(root, PASSPHRASE, "lab.pass")
    with mounted(repo_part, "ext4", readonly=False) as root:
        secret = passphrase_file(tmp_path, PASSPHRASE, "init.pass")
        subprocess.run(
            [sys.executable, "-m", "appliance.cli", "init", "--repo", str(root / "lab"),
             "--encrypt", "--passphrase-file", str(secret)],
            check=True, capture_output=True,
        )  # fmt: skip
    common = (
        f"appliance.repo=LABEL={repo_label} appliance.repo_dir=lab appliance.image=pc1 "
        f"appliance.wait=2 appliance.passphrase_file=LABEL={key_label}:/lab.pass"
    )
    code, text = _job(f"{common} appliance.job=save appliance.source={src}")
    assert code == 0, text
    assert "passphrase: read from lab.pass" in text and PASSPHRASE not in text

    keyring.forget_all()  # as after a reboot: the key file is unwrapped again
    code, text = _job(f"{common} appliance.job=restore appliance.target={Path(dst).name}")
    assert code == 0, text
    assert "not authenticated" not in text
    assert_equivalent(src, dst)

    keyring.forget_all()
    no_file = common.replace(f" appliance.passphrase_file=LABEL={key_label}:/lab.pass", "")
    code, text = _job(f"{no_file} appliance.job=verify")
    assert code == 6, text
    assert "is encrypted; name a file that holds its passphrase with" in text

    code, text = _job(f"{no_file} appliance.job=verify appliance.passphrase={PASSPHRASE}")
    assert code != 0 and PASSPHRASE not in text  # refused before anything runs

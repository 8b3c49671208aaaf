"""A repository on the network that stops answering in the middle of a restore: a real nginx
stopped by its PID, a real sshd (and the connection it forked) killed under an sshfs share.
Each ends with one sentence naming the host, exit 12 (not 9: nothing says the data is
damaged), the target still marked as an incomplete restore with no valid table, and no
mount left behind."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.cli import appliance
from kit.datadisk import build_data_disk, data_disk_size
from kit.diskbuild import MiB, sparse_file
from kit.interrupt import first_write, has_valid_table, marked, reported
from kit.loops import Loops
from kit.sshserver import SshServer, fuse_mounts_under, kill_server, ssh_server
from kit.webserve import nginx_process

pytestmark = pytest.mark.root

DATA = 256 * MiB  # a restore of it lasts long enough to stop its server half-way


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", *args, "--yes", "--progress=none"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def _ended(proc: subprocess.Popen[str], target: str, words: str) -> str:
    """The job's one sentence: exit 12, `words` in it, the target left marked."""
    _, err = proc.communicate(timeout=300)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 12, (proc.returncode, lines)
    assert len(lines) == 1, err
    assert words in lines[0], lines[0]
    assert "damaged" not in lines[0] and "incomplete restore" in lines[0], lines[0]
    assert marked(target) and not has_valid_table(target)
    assert reported(target) is not None
    return lines[0]


@pytest.fixture
def saved(loops: Loops, tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """(source disk, repository folder, a blank target of the same size)."""
    source = build_data_disk(loops, tmp_path / "source.img", DATA)
    repo = tmp_path / "served" / "repo"
    appliance("save", source, "--repo", str(repo), "--image", "data", "--create", "--no-check")
    blank = sparse_file(tmp_path, "target.img", data_disk_size(DATA))
    yield source, repo, loops.attach(blank)


def test_nginx_stopped_mid_restore(saved: tuple[str, Path, str], tmp_path: Path) -> None:
    _, repo, target = saved
    with nginx_process(repo.parent, tmp_path) as (base, server):
        proc = _start("restore", "--repo", f"{base}/repo/", "--image", "data", target)
        first_write(proc, target)
        assert proc.poll() is None, proc.communicate()
        server.terminate()  # by its PID: the master stops its workers
        server.wait(timeout=30)
        sentence = _ended(proc, target, f"The web server at {base} ")
    assert "cannot be reached" in sentence or "broke off" in sentence, sentence


@pytest.fixture
def sshd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SshServer]:
    monkeypatch.setenv("APPLIANCE_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("APPLIANCE_STATE_DIR", str(tmp_path / "state"))
    with ssh_server(tmp_path / "sshd") as server:
        yield server


def test_sshfs_share_whose_sshd_is_killed(
    saved: tuple[str, Path, str], sshd: SshServer, tmp_path: Path
) -> None:
    _, repo, target = saved
    key = ("--credentials", str(sshd.credentials))
    appliance("images", "--repo", sshd.address(repo), *key, "--accept-host-key", sshd.fingerprint)
    proc = _start("restore", "--repo", sshd.address(repo), "--image", "data", target, *key)
    first_write(proc, target)
    assert proc.poll() is None, proc.communicate()
    kill_server(sshd)
    sentence = _ended(proc, target, "The file server 127.0.0.1 stopped answering while")
    assert f"from the sshfs share root@127.0.0.1:{repo}" in sentence, sentence
    assert fuse_mounts_under(tmp_path / "run") == []

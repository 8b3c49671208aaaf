"""Mounting a network repository, at the seam where the mount program runs
(appliance/repo/netmount.py): the secret's way in, the clean-up, the unattended refusal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.errors import RepositoryError
from appliance.repo import mount as repomount
from appliance.repo import netmount
from appliance.repo.lock import process_start_time
from appliance.repo.netmount import NetOptions, clean_stale_mounts, mounted


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(repomount, "RUN_DIR", tmp_path / "run")
    monkeypatch.setattr(netmount, "which", lambda program: program)
    return tmp_path / "run"


def test_smb_password_goes_through_a_private_file(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[list[str], str, int]] = []

    def fake_run(argv: list[str], secret: str | None) -> tuple[int, str]:
        assert secret is None
        cred = Path(next(o for o in argv[-1].split(",") if o.startswith("credentials="))[12:])
        seen.append((argv, cred.read_text(), cred.stat().st_mode & 0o777))
        return 0, ""

    monkeypatch.setattr(netmount, "_run_mount", fake_run)
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return "s3cret pw"

    options = NetOptions(ask=ask)
    with mounted("smb://anna@files/it/images", writable=False, options=options) as folder:
        assert folder.parent.parent == run_dir / "net"
    argv, text, mode = seen[0]
    assert asked == ["Password for anna on //files/it: "]
    assert text == "username=anna\npassword=s3cret pw\n" and mode == 0o600
    assert not any("s3cret" in word for word in argv)
    assert "s3cret" not in repr(options)
    assert list((run_dir / "net").iterdir()) == []  # the file and the mount point are gone


def test_an_unattended_job_asks_nothing(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netmount, "_run_mount", lambda argv, secret: pytest.fail("mounted"))
    with (
        pytest.raises(RepositoryError, match="cannot ask; give a credentials file"),
        mounted("smb://anna@files/it", writable=False, options=NetOptions(ask=None)),
    ):
        pass
    assert list((run_dir / "net").iterdir()) == []


def test_a_failed_mount_is_its_sentence_and_leaves_nothing(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        netmount, "_run_mount", lambda argv, secret: (32, "mount.nfs: Connection refused\n")
    )
    with (
        pytest.raises(RepositoryError, match=r"^nas refused the connection: no NFS server"),
        mounted("nfs://nas/export/images", writable=True, options=NetOptions()),
    ):
        pass
    assert list((run_dir / "net").iterdir()) == []


def test_save_with_create_mounts_the_folder_above(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs: list[str] = []

    def fake_run(argv: list[str], secret: str | None) -> tuple[int, str]:
        specs.append(argv[3])
        if argv[3] == "nas:/export/images":
            return 32, "mount.nfs: access denied by server while mounting nas:/export/images\n"
        return 0, ""

    monkeypatch.setattr(netmount, "_run_mount", fake_run)
    with mounted("nfs://nas/export/images", writable=True, create=True) as folder:
        assert folder.name == "images" and folder.parent.parent.parent == run_dir / "net"
    assert specs == ["nas:/export/images", "nas:/export"]
    with (
        pytest.raises(RepositoryError, match="does not let this machine mount"),
        mounted("nfs://nas/export/images", writable=True, create=False),
    ):
        pass


def test_stale_folders_of_dead_jobs_only(run_dir: Path) -> None:
    root = run_dir / "net"
    dead = root / "999999999-1234"
    (dead / "ssh-nas-0").mkdir(parents=True)
    (dead / "smb-files-1.cred").write_text("password=x\n")
    alive = root / f"{os.getpid()}-{process_start_time(os.getpid())}"
    (alive / "ssh-nas-0").mkdir(parents=True)
    assert clean_stale_mounts() == []  # nothing was mounted there
    assert not dead.exists()
    assert (alive / "ssh-nas-0").is_dir()

"""The session (tui/session.py) on its own, with no app and no Textual, and the progress
message's rule for superseding a queued one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from kit.tui.fakes import BLANK, LAPTOP, STICK, FakeBackend, FakeMount

from appliance.errors import ApplianceError, SafetyRefusal
from appliance.progress import ProgressEvent
from tui.messages import JobProgress
from tui.session import Session

ROOT = Path(__file__).resolve().parents[2]


def test_the_session_imports_no_textual() -> None:
    code = (
        "import sys, tui.session\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def test_scan_notes_a_whole_disk_filesystem_and_the_repository() -> None:
    backend = FakeBackend(whole={"sdb": "ext4 BACKUP"})
    session = Session(backend, repo="/media/images/appliance")
    heard: list[tuple[str, ...]] = []
    session.disks_changed.subscribe(
        None, lambda scan: heard.append(tuple(d.name for d in scan.disks))
    )
    session.set_disks(session.scan())
    assert heard == [("sda", "sdb", "sdc")]
    assert session.disk("sdb") == BLANK
    assert session.disk_notes(session.disks) == {"sdb": "ext4, no table", "sdc": "repository"}


def test_measure_stops_when_a_job_starts_and_the_usage_is_forgotten_after() -> None:
    session = Session(FakeBackend())
    measured: list[str] = []

    def heard(name: str) -> None:
        measured.append(name)
        if name == "sda":
            session.job_started()  # a job starts while the disks are being measured

    session.measure([LAPTOP, BLANK, STICK], heard)
    assert measured == ["sda"]
    usage = session.usage_of(LAPTOP)
    assert usage is not None and usage[3].used == 61_000_000_000
    assert session.usage_of(BLANK) is None
    session.job_finished()
    assert not session.job_running and session.usage_of(LAPTOP) is None


def test_prepare_repo_needs_a_repository_and_keeps_off_the_jobs_disks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = Session(FakeBackend())
    with pytest.raises(ApplianceError, match="No repository is chosen yet"):
        session.prepare_repo(writable=False)
    mount = FakeMount("/dev/sda3", Path("/run/appliance/repo-sda3"), False, True, "ntfs")
    assert session.set_repo("/run/appliance/repo-sda3/appliance-images", mount) is None

    def on_sda(node: str, disks: Sequence[str], role: str) -> None:  # sysfs has no sda3 here
        if node == "/dev/sda3" and "sda" in disks:
            raise SafetyRefusal(f"{node} is on /dev/sda, the disk this job {role}.")

    monkeypatch.setattr("tui.session.check_not_on", on_sda)
    with pytest.raises(SafetyRefusal):
        session.prepare_repo(writable=True, avoid=["sda"])
    assert not mount.writable  # refused before the remount
    assert session.prepare_repo(writable=True, avoid=["sdb"]).endswith("appliance-images")
    assert mount.writable and session.mount_to_make_readonly() is mount


def test_set_repo_unmounts_the_old_mount_and_reports_why_it_could_not() -> None:
    class Stuck(FakeMount):
        def unmount(self) -> None:
            raise ApplianceError("/dev/sda3 is busy.")

    session = Session(FakeBackend())
    said: list[str | None] = []
    session.repo_changed.subscribe(None, said.append)
    session.set_repo("/run/x/appliance-images", Stuck("/dev/sda3", Path("/run/x"), False, True))
    failed = session.set_repo("/tmp", None)
    assert isinstance(failed, ApplianceError) and str(failed) == "/dev/sda3 is busy."
    assert session.repo.path == "/tmp" and session.repo.mount is None
    assert said == ["/run/x/appliance-images", "/tmp"] and session.repo.free == 48_200_000_000


def event(phase: str, done: int) -> ProgressEvent:
    return ProgressEvent(phase, done, 100, 1.0, None, 1.0)


def test_a_progress_update_supersedes_only_one_of_the_same_phase() -> None:
    first = JobProgress(event("restore", 10))
    assert first.can_replace(JobProgress(event("restore", 20)))
    assert not first.can_replace(JobProgress(event("table", 20)))
    assert not JobProgress(event("table", 0)).can_replace(JobProgress(event("restore", 0)))

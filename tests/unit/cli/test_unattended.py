"""Unattended jobs: what happens after the job (power, failures, bugs) and on the consoles."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from appliance.cli import unattended
from appliance.cli.cmdline import JobSpec
from appliance.cli.console import Console, mirror_consoles
from appliance.errors import DeviceError, RepositoryError

DEBIAN = (
    "BOOT_IMAGE=/live/vmlinuz initrd=/live/initrd.img boot=live components quiet "
    "nopersistence noswap"
)


def test_wait_for_retries_then_gives_up() -> None:
    calls: list[int] = []
    said: list[str] = []

    def late() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise DeviceError("No disk has the serial 'X'.")
        return "/dev/sdz"

    assert unattended.wait_for(late, 60, said.append, sleep=lambda s: None) == "/dev/sdz"
    assert len(calls) == 3 and len(said) == 1 and "waiting up to 60 s" in said[0]

    def never() -> str:
        raise DeviceError("gone")

    with pytest.raises(DeviceError, match="gone"):
        unattended.wait_for(never, 0, said.append, sleep=lambda s: None)


def _console() -> tuple[Console, io.StringIO, io.StringIO]:
    main, mirror = io.StringIO(), io.StringIO()
    return Console(main, [mirror]), main, mirror


LINE = (
    "appliance.job=restore appliance.repo=LABEL=IMAGES appliance.image=base "
    "appliance.target=serial:T1 appliance.then=poweroff"
)


def test_success_powers_off_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unattended, "run_job", lambda spec, console, cancel: "all good")
    monkeypatch.setattr(unattended.time, "sleep", lambda s: None)
    actions: list[str] = []
    console, main, mirror = _console()
    assert unattended.run(LINE, console, power_action=actions.append) == 0
    assert actions == ["poweroff"]
    assert "unattended restore done: all good" in main.getvalue()
    assert main.getvalue() == mirror.getvalue()


def test_failure_never_powers_off(monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(spec: JobSpec, console: Console, cancel: object) -> str:
        raise RepositoryError("The repository partition /dev/sdc1 cannot be mounted.")

    monkeypatch.setattr(unattended, "run_job", fails)
    actions: list[str] = []
    console, main, mirror = _console()
    assert unattended.run(LINE, console, power_action=actions.append) == 6
    assert actions == []
    text = mirror.getvalue()
    assert "FAILED: The repository partition /dev/sdc1 cannot be mounted." in text
    assert "nothing powers off" in text


def test_bad_line_is_reported_not_raised() -> None:
    console, main, _ = _console()
    assert unattended.run("appliance.job=dance", console, power_action=pytest.fail) == 2
    assert "cannot start: appliance.job=dance is not a job" in main.getvalue()


def test_no_job_does_nothing() -> None:
    console, main, _ = _console()
    assert unattended.run(DEBIAN, console, power_action=pytest.fail) == 0
    assert "nothing to do" in main.getvalue()


def test_mirrors_skip_virtual_terminals(tmp_path: Path) -> None:
    active = tmp_path / "active"
    active.write_text("tty0 ttyS0 ttyS1\n")
    (tmp_path / "ttyS0").write_text("")  # a stand-in for the serial port; ttyS1 is absent
    mirrors = mirror_consoles(io.StringIO(), active, tmp_path)
    try:
        assert len(mirrors) == 1  # ttyS0 only: tty0 is a virtual terminal, ttyS1 is absent
        mirrors[0].write("hello\n")
        mirrors[0].flush()
        assert (tmp_path / "ttyS0").read_text() == "hello\n"
    finally:
        for m in mirrors:
            m.close()
    assert mirror_consoles(io.StringIO(), tmp_path / "missing", tmp_path) == []


def test_cli_reads_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.cli.main import main

    line = tmp_path / "cmdline"
    line.write_text("appliance.job=verify appliance.image=x\n")
    assert main(["unattended", "--cmdline", str(line)]) == 2
    assert "needs appliance.repo=" in capsys.readouterr().out
    assert main(["unattended", "--cmdline", str(tmp_path / "none")]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_a_bug_is_one_sentence_on_every_console(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = tmp_path / "appliance.log"
    monkeypatch.setenv("APPLIANCE_LOG", str(log))

    def bug(spec: JobSpec, console: Console, cancel: object) -> str:
        raise KeyError("stats")

    monkeypatch.setattr(unattended, "run_job", bug)
    actions: list[str] = []
    console, main, mirror = _console()
    assert unattended.run(LINE, console, power_action=actions.append) == 70
    assert actions == []
    assert main.getvalue() == mirror.getvalue()
    assert (
        "appliance: the unattended restore FAILED: An internal error stopped the job; "
        f"the details are in {log}.\n" in main.getvalue()
    )
    assert "Traceback" not in main.getvalue()
    assert "KeyError: 'stats'" in log.read_text()

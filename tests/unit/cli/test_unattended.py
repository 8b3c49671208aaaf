"""Unattended jobs: the kernel command line's keys, naming disks, and what happens after."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from appliance.cli import unattended
from appliance.cli.cmdline import JobSpec, parse_cmdline, split_cmdline
from appliance.cli.console import Console, mirror_consoles
from appliance.disk.model import Disk
from appliance.disk.naming import match_disk, resolve_partition
from appliance.errors import DeviceError, RepositoryError, UsageError

DEBIAN = (
    "BOOT_IMAGE=/live/vmlinuz initrd=/live/initrd.img boot=live components quiet "
    "nopersistence noswap"
)


def disk(name: str, model: str | None, serial: str | None) -> Disk:
    return Disk(
        name=name,
        node=f"/dev/{name}",
        size=10**9,
        logical_sector=512,
        physical_sector=512,
        model=model,
        serial=serial,
    )


DISKS = [
    disk("sda", "Samsung SSD 870 EVO", "S1"),
    disk("sdb", "Samsung SSD 870 EVO", "S2"),
    disk("vda", "VirtIO disk", "SRC-1"),
    disk("nvme0n1", "WD Blue SN570", None),
]


def test_split_keeps_quoted_blanks() -> None:
    assert split_cmdline('a b="c d" "e=f g"  h\n') == ["a", "b=c d", "e=f g", "h"]
    assert split_cmdline('x="" y') == ["x=", "y"]


def test_no_job_means_none() -> None:
    assert parse_cmdline(DEBIAN) is None
    assert parse_cmdline("") is None


def test_save_with_every_key() -> None:
    spec = parse_cmdline(
        f"{DEBIAN} appliance.job=save appliance.repo=LABEL=IMAGES "
        "appliance.repo_dir=/lab/images/ appliance.image=pc-42 "
        "appliance.source=serial:SRC-1 appliance.then=poweroff "
        "appliance.level=9 appliance.wait=5"
    )
    assert spec == JobSpec(
        job="save",
        repo="LABEL=IMAGES",
        image="pc-42",
        repo_dir="lab/images",
        source="serial:SRC-1",
        target=None,
        then="poweroff",
        level=9,
        wait=5.0,
    )
    assert "save of serial:SRC-1 image pc-42" in spec.describe()


def test_restore_defaults_and_quoted_model() -> None:
    spec = parse_cmdline(
        "appliance.job=restore appliance.repo=UUID=1234-ABCD "
        'appliance.image=base appliance.target="model:Samsung SSD 870 EVO"'
    )
    assert spec is not None
    assert (spec.target, spec.then, spec.level, spec.wait, spec.source) == (
        "model:Samsung SSD 870 EVO",
        "shell",
        3,
        30.0,
        None,
    )


def test_verify_needs_no_disk() -> None:
    spec = parse_cmdline("appliance.job=verify appliance.repo=/dev/sdc1 appliance.image=x")
    assert spec is not None and spec.target is None


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("appliance.job=backup appliance.repo=/dev/sdc1 appliance.image=x", "not a job"),
        ("appliance.job=save appliance.image=x appliance.source=sda", "needs appliance.repo="),
        ("appliance.job=save appliance.repo=/dev/sdc1 appliance.source=sda", "appliance.image="),
        ("appliance.job=save appliance.repo=/dev/sdc1 appliance.image=x", "appliance.source="),
        ("appliance.job=restore appliance.repo=/dev/sdc1 appliance.image=x", "appliance.target="),
        (
            "appliance.job=verify appliance.repo=/dev/sdc1 appliance.image=x appliance.then=halt",
            "shell, poweroff or reboot",
        ),
        (
            "appliance.job=save appliance.repo=/dev/sdc1 appliance.image=x appliance.source=sda "
            "appliance.level=25",
            "from 1 to 19",
        ),
        (
            "appliance.job=verify appliance.repo=/dev/sdc1 appliance.image=x appliance.targte=sda",
            "appliance.targte, which the appliance does not know",
        ),
        ("appliance.job=verify appliance.repo= appliance.image=x", "has no value"),
    ],
)
def test_bad_command_lines_get_one_sentence(line: str, words: str) -> None:
    with pytest.raises(UsageError, match=words.replace(".", r"\.")) as info:
        parse_cmdline(line)
    assert info.value.exit_code == 2


def test_disks_by_serial_and_model() -> None:
    assert match_disk("serial:SRC-1", DISKS).name == "vda"
    assert match_disk("model:WD_Blue_SN570", DISKS).name == "nvme0n1"
    assert match_disk("model:virtio  DISK", DISKS).name == "vda"


def test_two_disks_with_one_model_are_refused() -> None:
    with pytest.raises(UsageError, match="2 disks have the model"):
        match_disk("model:Samsung SSD 870 EVO", DISKS)


def test_unknown_serial_lists_the_disks() -> None:
    with pytest.raises(
        DeviceError,
        match=r"No disk has the serial 'NOPE'\. The disks are: "
        r"Samsung SSD 870 EVO \(serial S1",
    ):
        match_disk("serial:NOPE", DISKS)


def test_repo_spec_must_be_a_tag_or_a_path() -> None:
    with pytest.raises(UsageError, match=r"LABEL=\.\.\., UUID="):
        resolve_partition("sdc1")
    with pytest.raises(UsageError, match="NAME is not one of"):
        resolve_partition("NAME=IMAGES")
    with pytest.raises(DeviceError, match="There is no partition /dev/nonexistent9"):
        resolve_partition("/dev/nonexistent9")


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

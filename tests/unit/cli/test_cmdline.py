"""The kernel command line's appliance.* keys: parsed into one job, or one sentence."""

from __future__ import annotations

import pytest

from appliance.cli.cmdline import JobSpec, parse_cmdline, split_cmdline
from appliance.errors import UsageError

DEBIAN = (
    "BOOT_IMAGE=/live/vmlinuz initrd=/live/initrd.img boot=live components quiet "
    "nopersistence noswap"
)


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


def test_a_file_server_with_its_credentials_partition() -> None:
    spec = parse_cmdline(
        "appliance.job=restore appliance.repo=smb://anna@files/it/images appliance.image=pc "
        "appliance.target=sda appliance.credentials=LABEL=KEYS:/office.cred "
        "appliance.host_key=SHA256:abc"
    )
    assert spec is not None
    assert (spec.repo, spec.credentials, spec.host_key) == (
        "smb://anna@files/it/images",
        "LABEL=KEYS:/office.cred",
        "SHA256:abc",
    )
    with pytest.raises(UsageError, match="must name a partition and a file on it"):
        parse_cmdline(
            "appliance.job=verify appliance.repo=nfs://nas/x appliance.image=pc "
            "appliance.credentials=office.cred"
        )


def test_receive_needs_a_target_only() -> None:
    spec = parse_cmdline(
        f"{DEBIAN} appliance.job=receive appliance.target=serial:PC-7 appliance.interface=eno1 "
        "appliance.from=http://10.0.0.1:8090/ appliance.then=poweroff"
    )
    assert spec is not None
    assert (spec.job, spec.target, spec.interface, spec.cast_from, spec.then) == (
        "receive",
        "serial:PC-7",
        "eno1",
        "http://10.0.0.1:8090/",
        "poweroff",
    )
    assert spec.describe() == "receive of a multicast image onto serial:PC-7, then poweroff"
    with pytest.raises(UsageError, match=r"receive needs appliance.target="):
        parse_cmdline("appliance.job=receive")

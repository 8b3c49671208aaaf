"""Lab mode's pieces without disks: the addresses read without a mount, the AWS credentials
file, and the refusal of secrets on the kernel command line."""

from __future__ import annotations

import os

import pytest

from appliance.cli import labmode
from appliance.cli.cmdline import JobSpec, parse_cmdline
from appliance.errors import UsageError


def test_web_servers_and_buckets_need_no_mount() -> None:
    for address in ("http://srv/repo/", "HTTPS://srv/r", "s3://bucket/lab"):
        assert labmode.is_store_address(address)
    for other in ("LABEL=IMAGES", "/dev/sdb1", "nfs://srv/export", "ssh://u@srv/p"):
        assert not labmode.is_store_address(other)
    spec = JobSpec(job="restore", repo="http://srv/repo/", image="a", repo_dir="lab/images")
    assert labmode.store_location(spec) == "http://srv/repo/lab/images"


def test_the_aws_file_gives_aws_variables_only() -> None:
    text = (
        "# lab bucket\nexport AWS_ACCESS_KEY_ID=AKIAEXAMPLE\n"
        "AWS_SECRET_ACCESS_KEY='wJalr/K7MDENG'\n\nAWS_ENDPOINT_URL=http://10.0.0.5:9000\n"
    )
    assert labmode.parse_aws_file(text, "KEYS:/s3.env") == {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalr/K7MDENG",
        "AWS_ENDPOINT_URL": "http://10.0.0.5:9000",
    }
    with pytest.raises(UsageError, match=r"Line 2 of the credentials file KEYS:/s3\.env"):
        labmode.parse_aws_file("AWS_REGION=eu\nPATH=/tmp\n", "KEYS:/s3.env")
    with pytest.raises(UsageError, match="holds no AWS_"):
        labmode.parse_aws_file("# empty\n", "KEYS:/s3.env")


def test_the_variables_go_to_the_environment_and_only_names_are_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    names = labmode.use_aws_variables({"AWS_SECRET_ACCESS_KEY": "s3cr3t"})
    assert names == ["AWS_SECRET_ACCESS_KEY"]
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "s3cr3t"


@pytest.mark.parametrize(
    "key", ["aws_secret_access_key", "aws_access_key_id", "password", "s3_secret", "token"]
)
def test_a_secret_on_the_kernel_command_line_is_refused(key: str) -> None:
    line = f"appliance.job=restore appliance.repo=s3://b/p appliance.{key}=x appliance.image=a"
    with pytest.raises(UsageError) as refused:
        parse_cmdline(line)
    assert f"appliance.{key} puts a secret on the kernel command line" in str(refused.value)
    assert "appliance.credentials=PARTITION:/FILE" in str(refused.value)
    assert "=x" not in str(refused.value)  # the secret itself is not repeated


def test_rules_pass_the_command_line_as_they_are() -> None:
    for rule in ("auto", "internal", "largest", "serial=S4EVNX0N"):
        spec = parse_cmdline(
            f"appliance.job=restore appliance.repo=http://srv/repo/ appliance.image=a "
            f"appliance.target={rule} appliance.then=poweroff"
        )
        assert spec is not None and spec.target == rule and spec.then == "poweroff"

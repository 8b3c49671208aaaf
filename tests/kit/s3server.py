"""A real S3 server for tests: moto's server mode as a process of its own on 127.0.0.1 (never
moto's in-process mock), started on a free port and stopped by its PID.

With `auth=True` the server checks signatures and IAM policies after its first few requests
(moto's INITIAL_NO_AUTH_ACTION_COUNT): `S3Server.user` makes an IAM user in those, so a test
has credentials that work, credentials that are refused, and a user that is denied.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from kit.webserve import free_port

#: moto's own test keys: any pair works while the server does not check
DEFAULT_KEYS = ("testing", "testing")
EVERYTHING = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@dataclass
class S3Server:
    endpoint: str
    pid: int
    log: Path

    def env(self, keys: tuple[str, str] = DEFAULT_KEYS, **extra: str) -> dict[str, str]:
        """The AWS variables that point a client (the appliance, rclone's S3 backend and
        boto3 alike) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": keys[0],
            "AWS_SECRET_ACCESS_KEY": keys[1],
            "AWS_DEFAULT_REGION": "us-east-1",
            **extra,
        }

    def client(self, keys: tuple[str, str] = DEFAULT_KEYS, service: str = "s3") -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            aws_access_key_id=keys[0],
            aws_secret_access_key=keys[1],
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )

    def user(
        self, name: str, *, allow: bool, admin: tuple[str, str] | None = None
    ) -> tuple[str, str]:
        """An IAM user's access key; `allow`: it may do everything, else nothing at all."""
        iam = self.client(admin or DEFAULT_KEYS, "iam")
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        if allow:
            iam.put_user_policy(
                UserName=name, PolicyName="all", PolicyDocument=json.dumps(EVERYTHING)
            )
        return str(key["AccessKeyId"]), str(key["SecretAccessKey"])

    def objects(self) -> list[str]:
        """Every key of every bucket (what the tests look at, read without the appliance)."""
        out = []
        s3 = self.client()
        for bucket in s3.list_buckets()["Buckets"]:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
                out += [f"{bucket['Name']}/{o['Key']}" for o in page.get("Contents", [])]
        return out


@contextlib.contextmanager
def moto_server(folder: Path, *, auth: bool = False) -> Iterator[S3Server]:
    """Start `python -m moto.server` on a free port of 127.0.0.1; stop it by PID at the end.
    `auth`: requests after the first three (an admin user's making) must be signed by a
    known key and allowed by its policy."""
    port = free_port()
    log = folder / f"moto-{port}.log"
    env = dict(os.environ)
    if auth:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"  # create_user, create_access_key, policy
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(endpoint, proc, log)
        yield S3Server(endpoint, proc.pid, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_until_up(endpoint: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto's server exited: {log.read_text(errors='replace')}")
        try:
            # moto answers its own dashboard path without counting it as an S3 action
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto's server did not answer at {endpoint}")


def clear_aws_settings(monkeypatch: Any, home: Path) -> None:
    """No AWS setting of this machine leaks into a test: no variable, no ~/.aws file."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

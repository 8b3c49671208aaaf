"""What only a bucket has: its location, its client's settings, its lock (a conditional PUT),
a delete stopped half-way, and the sentences of a bucket that cannot be used. Against moto's
S3 server, a process of its own on loopback (the Store contract itself runs in
test_store.py); a client that refuses one request stands in only where a server that lacks a
feature must be played."""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import urllib3.exceptions
from botocore.exceptions import ClientError
from kit.s3server import S3Server, clear_aws_settings, moto_server

from appliance.errors import RepositoryError, RepositoryLocked
from appliance.repo.repository import Repository, open_store
from appliance.repo.s3lock import S3Lock
from appliance.repo.s3store import S3Store, make_client, open_s3, parse_location

BUCKETS = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with moto_server(tmp_path_factory.mktemp("moto")) as running:
        yield running


@pytest.fixture
def aws(server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Server:
    """The AWS variables point at the server (and nothing of this machine's AWS settings)."""
    clear_aws_settings(monkeypatch, tmp_path)
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    return server


@pytest.fixture
def store(server: S3Server) -> S3Store:
    bucket = f"unit-{next(BUCKETS)}"
    server.client().create_bucket(Bucket=bucket)
    return S3Store(bucket, "repo", client=server.client())


def test_a_location_is_a_bucket_and_a_folder() -> None:
    assert parse_location("s3://images/lab/pc/") == ("images", "lab/pc")
    assert parse_location("s3://images") == ("images", "")
    for bad in ("s3://Images/x", "s3://a/x", "s3:///x", "s3://images/a/../b"):
        with pytest.raises(RepositoryError, match="s3://"):
            parse_location(bad)


def test_an_endpoint_that_is_not_aws_is_addressed_path_style(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clear_aws_settings(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    aws = make_client()
    assert "amazonaws.com" in aws.meta.endpoint_url
    assert (aws.meta.config.s3 or {}).get("addressing_style") != "path"
    assert aws.meta.config.max_pool_connections >= 16
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    other = make_client()
    assert other.meta.endpoint_url == "http://127.0.0.1:9"
    assert other.meta.config.s3["addressing_style"] == "path"


def test_settings_come_from_a_profile_in_the_config_files(
    aws: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    aws.client().create_bucket(Bucket="profiled")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name)
    (tmp_path / "aws-config").write_text(f"[profile lab]\nendpoint_url = {aws.endpoint}\n")
    (tmp_path / "aws-credentials").write_text(
        "[lab]\naws_access_key_id = a\naws_secret_access_key = b\n"
    )
    monkeypatch.setenv("AWS_PROFILE", "lab")
    store = open_s3("s3://profiled/x")
    assert store.endpoint == aws.endpoint and store.where == "s3://profiled/x"
    assert open_store("s3://profiled/x") is store  # one client and pool per location
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(RepositoryError, match=r"profile \(nobody\) could not be found"):
        open_s3("s3://profiled/x")


def test_a_bucket_that_cannot_be_used_is_a_sentence(
    aws: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RepositoryError) as missing:
        Repository.open("s3://not-there/x")
    assert str(missing.value) == (
        f"The S3 bucket not-there does not exist at {aws.endpoint}; create it or name another "
        "bucket."
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: the connection is refused
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
        with pytest.raises(RepositoryError) as unreachable:
            Repository.open("s3://images/x")
    assert str(unreachable.value) == (
        f"The S3 endpoint {dead} of the bucket images cannot be reached (connection refused); "
        "check AWS_ENDPOINT_URL and the network."
    )


def test_a_save_needs_create_for_an_empty_place(aws: S3Server) -> None:
    aws.client().create_bucket(Bucket="fresh")
    with pytest.raises(RepositoryError, match=r"no repository at s3://fresh/r; add --create"):
        Repository.open_for_save("s3://fresh/r")
    repo = Repository.open_for_save("s3://fresh/r", create=True)
    assert repo.location == "s3://fresh/r" and repo.folder is None
    assert Repository.open_for_save("s3://fresh/r").meta == repo.meta
    aws.client().put_object(Bucket="fresh", Key="other/file", Body=b"x")
    with pytest.raises(RepositoryError, match="not empty and is not an image repository"):
        Repository.open_for_save("s3://fresh/other", create=True)


# -- the lock ------------------------------------------------------------------------------
def _owner(store: S3Store) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(store.get("lock"))
    return data


def test_one_writer_at_a_time(store: S3Store) -> None:
    first = S3Lock(store, "save sda to one")
    with first:
        assert _owner(store)["command"] == "save sda to one"
        assert _owner(store)["pid"] == os.getpid()
        with pytest.raises(RepositoryLocked, match=r"in use by another job \(save sda to one"):
            S3Lock(store, "gc").acquire()
        assert first.conditional  # moto honours If-None-Match
    assert not store.exists("lock")
    with S3Lock(store, "gc"):
        assert _owner(store)["command"] == "gc"


def test_a_conditional_put_loses_to_a_lock_made_meanwhile(store: S3Store) -> None:
    assert store.put_new("lock", b"mine") is True
    assert store.put_new("lock", b"theirs") is False
    assert store.get("lock") == b"mine"


def test_a_stale_lock_is_taken_over_and_another_host_is_respected(store: S3Store) -> None:
    dead = {"pid": 999999999, "host": socket.gethostname(), "start": "1", "command": "save"}
    store.put("lock", json.dumps(dead).encode(), durable=True)
    with S3Lock(store, "delete"):
        assert _owner(store)["command"] == "delete"
    other = {**dead, "host": "elsewhere", "since": "2026-12-01 10:00:00"}
    store.put("lock", json.dumps(other).encode(), durable=True)
    with pytest.raises(RepositoryLocked, match="save, on elsewhere, process 999999999, since"):
        S3Lock(store, "gc").acquire()
    assert _owner(store)["host"] == "elsewhere"  # a refused lock leaves the other one alone


class NoConditions:
    """A client whose server does not take If-None-Match (answers 501), else the real one."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.refused = 0

    def put_object(self, **args: Any) -> Any:
        if "IfNoneMatch" in args:
            self.refused += 1
            error = {"Error": {"Code": "NotImplemented", "Message": "A header you provided"}}
            raise ClientError(error, "PutObject")  # type: ignore[arg-type]
        return self.client.put_object(**args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_without_conditional_puts_the_lock_is_a_best_effort(store: S3Store) -> None:
    plain = S3Store(store.bucket, store.prefix, client=NoConditions(store.client))
    lock = S3Lock(plain, "save sda to one")
    with lock:
        assert not lock.conditional and _owner(store)["command"] == "save sda to one"
        with pytest.raises(RepositoryLocked):  # looked for before it is written
            S3Lock(plain, "gc").acquire()
    assert not store.exists("lock")


# -- a delete stopped half-way ----------------------------------------------------------
class StopsDeleting:
    """A client whose batch delete fails (the job was stopped there)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def delete_objects(self, **args: Any) -> Any:
        raise ClientError({"Error": {"Code": "InternalError"}}, "DeleteObjects")  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_a_stopped_delete_leaves_no_image_that_can_be_used(store: S3Store) -> None:
    repo = Repository.create(store)
    for name in ("manifest.json", "p1.idx", "log.txt"):
        store.put(f"images/one/{name}", b"{}", durable=True)
    stopped = Repository.in_store(S3Store(store.bucket, store.prefix, StopsDeleting(store.client)))
    with pytest.raises(RepositoryError) as caught:
        stopped.remove_image("one")
    assert str(caught.value) == (
        f"Writing to the repository at {store.where} failed: the bucket {store.bucket} at "
        f"{store.endpoint} answered InternalError."
    )
    assert not store.exists("images/one/manifest.json")  # the manifest went first
    assert store.exists("images/one/p1.idx")
    repo.remove_image("one")  # deleting again finishes it
    assert repo.image_names() == [] and list(store.list("images/")) == []


def test_keys_hidden_in_a_folder_are_hidden_in_a_bucket(store: S3Store) -> None:
    """A folder copied with its leftovers (".NAME.PID.tmp", ".deleting-NAME/") shows none."""
    store.put("chunks/ab/cd/abcd", b"whole", durable=False)
    store.put("chunks/ab/cd/.abcd.4242.tmp", b"half", durable=False)
    store.put("images/.deleting-old/manifest.json", b"{}", durable=False)
    assert list(store.list("chunks/")) == ["chunks/ab/cd/abcd"]
    assert store.folders("images/") == []


def test_an_empty_value_has_a_head_of_nothing(store: S3Store) -> None:
    store.put("empty", b"", durable=True)
    assert store.head("empty", 16) == (b"", 0)
    assert store.read_into("empty", bytearray(8)) == 0 and store.get("empty") == b""


class BreaksOnce:
    """A client whose first object body breaks off after a few bytes (a dropped connection)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.broken = 0

    def get_object(self, **args: Any) -> Any:
        reply = self.client.get_object(**args)
        if not self.broken:
            self.broken += 1
            real = reply["Body"]

            class Broken:
                def read(self, amount: int | None = None) -> bytes:
                    raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead")

                def close(self) -> None:
                    real.close()

            reply["Body"] = Broken()
        return reply

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_a_transfer_that_breaks_off_is_fetched_again(store: S3Store) -> None:
    store.put("chunks/ab/cd/abcd", b"whole chunk", durable=False)
    flaky = BreaksOnce(store.client)
    again = S3Store(store.bucket, store.prefix, client=flaky)
    assert again.get("chunks/ab/cd/abcd") == b"whole chunk" and flaky.broken == 1


def test_the_engine_threads_share_one_pool(
    aws: S3Server, store: S3Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Puts and gets from many threads at once through the appliance's own client: every
    value whole, no connection thrown away for want of room in the pool (urllib3 warns when
    it does; a client with boto3's default pool of 10 fails this)."""
    store = S3Store(store.bucket, store.prefix)  # make_client(), from the AWS variables
    values = {f"chunks/{n:02x}/00/{n:064x}": os.urandom(64 * 1024) for n in range(96)}
    with caplog.at_level(logging.WARNING), ThreadPoolExecutor(24) as pool:
        list(pool.map(lambda kv: store.put(kv[0], kv[1], durable=False), values.items()))
        got = dict(zip(values, pool.map(store.get, values), strict=True))
    assert got == values
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]

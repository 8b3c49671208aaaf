"""A repository in an S3 bucket, through the real command line, against a real S3 server
(moto's server mode, a process of its own on 127.0.0.1; tests/kit/s3server.py).

A real GPT disk is saved to s3://BUCKET/PREFIX, listed, verified, restored onto another loop
disk and compared; a second save of the changed disk stores few new chunks; delete and gc
work in the bucket; a folder repository copied into a bucket with rclone restores from it;
and every failure (missing bucket, refused or missing credentials, a user denied, an endpoint
that does not answer, a lock held by a running job) is one sentence and writes nothing.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit.cli import appliance, file_digest, refused, result_json
from kit.diskbuild import GPT_DISK_SIZE, build_gpt_disk, mutate_disk, sparse_file
from kit.diskcompare import assert_equivalent
from kit.loops import Loops
from kit.s3server import S3Server, clear_aws_settings, free_port, moto_server

pytestmark = pytest.mark.root

BUCKET = "images"
PREFIX = "lab/pc"
REPO = f"s3://{BUCKET}/{PREFIX}"
UNTOUCHED = itertools.count()


@dataclass
class Bucket:
    server: S3Server
    loops: Loops
    folder: Path
    source: str
    source_file: Path
    first: dict[str, object]  # the first save's --json result

    def blank(self, name: str) -> tuple[str, Path]:
        path = sparse_file(self.folder, name, GPT_DISK_SIZE)
        return self.loops.attach(path), path

    def objects(self, prefix: str = f"{BUCKET}/{PREFIX}/") -> list[str]:
        return [k[len(prefix) :] for k in self.server.objects() if k.startswith(prefix)]


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bucket]:
    """moto's server with the bucket "images"; a GPT disk saved to s3://images/lab/pc as
    image "pc-1"; the AWS variables point every command at the server."""
    folder = tmp_path_factory.mktemp("s3")
    loops = Loops(folder)
    with pytest.MonkeyPatch.context() as mp, moto_server(folder) as server:
        clear_aws_settings(mp, folder)
        for name, value in server.env().items():
            mp.setenv(name, value)
        server.client().create_bucket(Bucket=BUCKET)
        try:
            source_file = folder / "source.img"
            source = build_gpt_disk(loops, source_file)
            before = file_digest(source_file)
            proc = appliance(
                "save", source, "--repo", REPO, "--image", "pc-1", "--create", "--json"
            )
            assert file_digest(source_file) == before
            yield Bucket(server, loops, folder, source, source_file, result_json(proc))
        finally:
            loops.cleanup()


def test_the_bucket_holds_format_v1_under_its_prefix(bucket: Bucket) -> None:
    keys = bucket.objects()
    assert "repo.json" in keys and "lock" not in keys  # the lock went with the save
    assert json.loads(
        bucket.server.client().get_object(Bucket=BUCKET, Key=f"{PREFIX}/repo.json")["Body"].read()
    )["format"] == ("appliance-repository")
    chunks = [k for k in keys if k.startswith("chunks/")]
    assert len(chunks) == bucket.first["new_chunks"]
    for key in chunks:  # chunks/ab/cd/abcd...: the folder's own paths
        _, a, b, name = key.split("/")
        assert len(name) == 64 and (a, b) == (name[:2], name[2:4])
    assert {"images/pc-1/manifest.json", "images/pc-1/log.txt", "images/pc-1/p2.idx"} <= set(keys)


def test_images_info_verify(bucket: Bucket) -> None:
    out = result_json(appliance("images", "--repo", REPO, "--json"))
    [image] = [i for i in out["images"] if i["name"] == "pc-1"]
    assert image["complete"] and image["restorable"] and image["disk"]["size"] == GPT_DISK_SIZE
    info = result_json(appliance("info", "--repo", REPO, "--image", "pc-1", "--json"))
    assert info["complete"] and all(r["index_ok"] for r in info["regions"])
    checked = result_json(appliance("verify", "--repo", REPO, "--image", "pc-1", "--json"))
    assert checked["ok"] and checked["chunks"] == bucket.first["new_chunks"]
    appliance("verify", "--repo", REPO, "--image", "pc-1", "--against", bucket.source)


def test_restore_from_the_bucket(bucket: Bucket) -> None:
    target, _ = bucket.blank("target.img")
    proc = appliance("restore", "--repo", REPO, "--image", "pc-1", target, "--yes")
    assert "every chunk was checked" in proc.stdout
    assert_equivalent(bucket.source, target, same_size=True)


def test_a_second_save_stores_few_chunks_then_delete_and_gc(bucket: Bucket) -> None:
    stored = {k for k in bucket.objects() if k.startswith("chunks/")}
    mutate_disk(bucket.source)  # ~1 MiB of new random file data, 4 KiB of a text file
    second = result_json(
        appliance("save", bucket.source, "--repo", REPO, "--image", "pc-2", "--json")
    )
    chunks_before = {k for k in bucket.objects() if k.startswith("chunks/")}
    # only the windows that changed were put: a few, and about the mutation's size
    assert len(chunks_before - stored) == second["new_chunks"] > 0
    first_new, first_bytes = (int(str(bucket.first[k])) for k in ("new_chunks", "new_bytes"))
    assert second["new_chunks"] < first_new // 2, (second, bucket.first)
    assert second["new_bytes"] < min(first_bytes // 3, 2 << 20), (second, bucket.first)

    deleted = result_json(
        appliance("delete", "--repo", REPO, "--image", "pc-1", "--yes", "--gc", "--json")
    )
    chunks_after = {k for k in bucket.objects() if k.startswith("chunks/")}
    assert deleted["gc_ran"] and deleted["gc_chunks"] == len(chunks_before - chunks_after) > 0
    assert not [k for k in bucket.objects() if k.startswith("images/pc-1/")]
    names = [
        i["name"] for i in result_json(appliance("images", "--repo", REPO, "--json"))["images"]
    ]
    assert names == ["pc-2"]
    assert result_json(appliance("gc", "--repo", REPO, "--json"))["removed_chunks"] == 0
    target, _ = bucket.blank("target-2.img")
    appliance("restore", "--repo", REPO, "--image", "pc-2", target, "--yes")
    assert_equivalent(bucket.source, target, same_size=True)


def test_a_folder_repository_copied_with_rclone_restores_from_the_bucket(
    bucket: Bucket, tmp_path: Path
) -> None:
    folder = tmp_path / "repo"
    appliance("save", bucket.source, "--repo", str(folder), "--image", "copied", "--create")
    bucket.server.client().create_bucket(Bucket="copy")
    rclone = {
        "RCLONE_CONFIG_MOTO_TYPE": "s3",
        "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
        "RCLONE_CONFIG_MOTO_ENDPOINT": bucket.server.endpoint,
        "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE": "true",
    }
    subprocess.run(
        ["rclone", "sync", str(folder), "moto:copy/from-a-folder"],
        check=True,
        env={**os.environ, **rclone},
        capture_output=True,
        timeout=600,
    )
    where = "s3://copy/from-a-folder"
    [image] = result_json(appliance("images", "--repo", where, "--json"))["images"]
    assert image["name"] == "copied" and image["restorable"]
    target, _ = bucket.blank("target-copy.img")
    appliance("restore", "--repo", where, "--image", "copied", target, "--yes")
    assert_equivalent(bucket.source, target, same_size=True)


# -- failures: one sentence, nothing written ---------------------------------------------
def _restore_refused(bucket: Bucket, repo: str, code: int, words: str) -> str:
    target, path = bucket.blank(f"untouched-{next(UNTOUCHED)}.img")
    before = file_digest(path)
    sentence = refused(
        appliance("restore", "--repo", repo, "--image", "pc-2", target, "--yes", check=False),
        code,
        words,
    )
    assert file_digest(path) == before, "a refused restore wrote to its target"
    return sentence


def test_a_missing_bucket_is_one_sentence(bucket: Bucket) -> None:
    sentence = _restore_refused(bucket, "s3://no-such-bucket/x", 6, "does not exist")
    assert "no-such-bucket" in sentence and bucket.server.endpoint in sentence
    refused(
        appliance(
            "save",
            bucket.source,
            "--repo",
            "s3://no-such-bucket/x",
            "--image",
            "x",
            "--create",
            check=False,
        ),
        6,
        "The S3 bucket no-such-bucket does not exist",
    )


def test_an_endpoint_that_does_not_answer_is_one_sentence(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()  # nothing listens there
    with socket.socket():
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        sentence = _restore_refused(bucket, REPO, 6, "cannot be reached")
    assert f"http://127.0.0.1:{port}" in sentence and BUCKET in sentence


def test_missing_credentials_are_one_sentence(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    sentence = _restore_refused(bucket, REPO, 6, "There are no credentials for the bucket images")
    assert "AWS_ACCESS_KEY_ID" in sentence


def test_a_lock_held_by_a_running_job_refuses_a_save(bucket: Bucket) -> None:
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "start": Path(f"/proc/{os.getpid()}/stat").read_text().rpartition(")")[2].split()[19],
        "command": "save sdq to other",
        "since": "2026-01-01 00:00:00",
    }
    s3 = bucket.server.client()
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/lock", Body=json.dumps(me).encode())
    try:
        refused(
            appliance("save", bucket.source, "--repo", REPO, "--image", "locked", check=False),
            7,
            "in use by another job (save sdq to other",
        )
        assert not [k for k in bucket.objects() if k.startswith("images/locked/")]
        me["pid"] = 999999999  # a job of this machine that is gone: its lock is stale
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/lock", Body=json.dumps(me).encode())
        appliance("gc", "--repo", REPO)
        assert "lock" not in bucket.objects()
    finally:
        s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/lock")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[S3Server, tuple[str, str]]]:
    """A second server that checks signatures and policies, and an allowed user's keys."""
    with moto_server(tmp_path_factory.mktemp("guarded"), auth=True) as server:
        admin = server.user("admin", allow=True)
        server.client(admin).create_bucket(Bucket=BUCKET)
        yield server, admin


def test_refused_and_denied_credentials_are_one_sentence(
    bucket: Bucket,
    guarded: tuple[S3Server, tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, admin = guarded
    for name, value in server.env(("AKIAWRONGWRONGWRONG1", "wrong-secret")).items():
        monkeypatch.setenv(name, value)
    sentence = _restore_refused(bucket, REPO, 6, "refused the credentials for the bucket images")
    assert server.endpoint in sentence

    nobody = server.user("nobody", allow=False, admin=admin)
    for name, value in server.env(nobody).items():
        monkeypatch.setenv(name, value)
    _restore_refused(bucket, REPO, 6, "Access to the bucket images at")

    for name, value in server.env(admin).items():  # the allowed user works end to end
        monkeypatch.setenv(name, value)
    appliance("save", bucket.source, "--repo", REPO, "--image", "signed", "--create")
    assert result_json(appliance("images", "--repo", REPO, "--json"))["images"][0]["name"] == (
        "signed"
    )

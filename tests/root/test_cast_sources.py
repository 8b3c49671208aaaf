"""`cast send` from a repository that is not a folder of the sender: on an ssh server
(mounted with sshfs for the job, as every --repo command does) and on a web server (read key
by key, and served key by key to the receivers). The sender, its server and a receiver are
in the network namespaces of tests/kit/castroom.py. The receiver's udp-receiver damages its
stream every 3 MiB, so it must also fetch chunks over HTTP from what the sender serves; its
disk ends equal to the source, and the sender leaves no mount behind."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.castroom import Pc, damaging_receiver, room
from kit.diskbuild import GPT_DISK_SIZE, sparse_file
from kit.diskcompare import assert_equivalent
from kit.interrupt import marked
from kit.loops import Loops
from kit.saved import Saved, saved_gpt_disk
from kit.sshserver import fuse_mounts_under, ssh_server
from kit.webserve import free_port

pytestmark = pytest.mark.root

TIMEOUT = 300


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Saved]:
    with saved_gpt_disk(tmp_path_factory.mktemp("castsrc")) as saved:
        yield saved


def _run_room(
    sender: Pc, receiver: Pc, repo_args: list[str], node: str, tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    env = {"APPLIANCE_RUN_DIR": str(tmp_path / "run"), "APPLIANCE_STATE_DIR": str(tmp_path)}
    wrap = damaging_receiver(tmp_path / "wrap")
    got = subprocess.Popen(
        receiver.appliance(
            "cast", "receive", node, "--interface", "eth0", "--yes", "--json", "--wait", "120",
            env={"PATH": f"{wrap}:/usr/sbin:/usr/bin:/sbin:/bin"},
        ),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    sent = subprocess.run(
        sender.appliance(
            "cast", "send", *repo_args, "--image", "base", "--receivers", "1", "--wait", "60",
            "--interface", "eth0", "--linger", "3", env=env,
        ),
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    out, err = got.communicate(timeout=TIMEOUT)
    return sent, subprocess.CompletedProcess(got.args, got.returncode, out, err)


def _received(got: subprocess.CompletedProcess[str], saved: Saved, node: str) -> None:
    assert got.returncode == 0, got.stderr
    assert '"fetched": 0' not in got.stdout, got.stdout  # the damage came from the sender
    assert not marked(node)
    assert_equivalent(saved.source, node, same_size=True)


@pytest.mark.slow
def test_cast_send_from_an_ssh_server(saved: Saved, loops: Loops, tmp_path: Path) -> None:
    node = loops.attach(sparse_file(tmp_path, "t.img", GPT_DISK_SIZE))
    with room(2) as (sender, receiver), ssh_server(tmp_path / "sshd", sender.namespace) as sshd:
        repo_args = [
            "--repo", sshd.address(saved.repo), "--credentials", str(sshd.credentials),
            "--accept-host-key", sshd.fingerprint,
        ]  # fmt: skip
        sent, got = _run_room(sender, receiver, repo_args, node, tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert "Sent image base to 1 receiver" in sent.stdout
    _received(got, saved, node)
    assert fuse_mounts_under(tmp_path / "run") == []


def test_cast_send_from_a_web_server(saved: Saved, loops: Loops, tmp_path: Path) -> None:
    node = loops.attach(sparse_file(tmp_path, "t.img", GPT_DISK_SIZE))
    port = free_port()
    with room(2) as (sender, receiver):
        web = subprocess.Popen(
            sender.command(
                sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                "--directory", str(saved.folder), str(port),
            ),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            address = f"http://127.0.0.1:{port}/repo/"  # only the sender can reach it
            sent, got = _run_room(sender, receiver, ["--repo", address], node, tmp_path)
        finally:
            web.terminate()
            web.wait(timeout=30)
    assert sent.returncode == 0, sent.stderr
    _received(got, saved, node)

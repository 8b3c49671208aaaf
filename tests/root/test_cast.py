"""`appliance cast send` / `cast receive`: one image of a real GPT disk multicast with udpcast
to three receivers, each in its own network namespace (a bridge, veth pairs: nothing on the
machine's own network), each restoring onto its own loop disk, all compared with the source
by independent tools. One receiver's udp-receiver damages its stream: it fetches the damaged
chunks over HTTP from the sender's repository and still ends equal. Failures are one
sentence each, with nothing written."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.castroom import Pc, damaging_receiver, room
from kit.cli import refused
from kit.diskbuild import GPT_DISK_SIZE, sparse_file
from kit.diskcompare import assert_equivalent, read_bytes
from kit.interrupt import marked
from kit.loops import Loops
from kit.saved import Saved, saved_gpt_disk

pytestmark = pytest.mark.root

OLD_HEAD = b"\xee" * 4096
HTTP_PORT = 8090
TIMEOUT = 300


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Saved]:
    with saved_gpt_disk(tmp_path_factory.mktemp("cast")) as saved:
        yield saved


def target(loops: Loops, directory: Path, name: str) -> str:
    path = sparse_file(directory, name, GPT_DISK_SIZE)
    with open(path, "r+b") as handle:
        handle.write(OLD_HEAD)
    return loops.attach(path)


def start(argv: list[str], log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log.open("w"), text=True
    )


def finish(proc: subprocess.Popen[str], log: Path) -> tuple[int, str, str]:
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=30)
    return proc.returncode, out, log.read_text()


def result(out: str) -> dict[str, object]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return next(line for line in reversed(lines) if line.get("type") == "result")


def receive(pc: Pc, node: str, log: Path, env: dict[str, str] | None = None) -> list[str]:
    return pc.appliance(
        "cast", "receive", node, "--interface", "eth0", "--yes", "--json", "--wait", "120",
        env=env,
    )  # fmt: skip


@pytest.mark.slow
def test_one_stream_to_three_receivers(saved: Saved, loops: Loops, tmp_path: Path) -> None:
    """Receiver 0: `cast receive`; receiver 1: the boot parameters (`appliance unattended`);
    receiver 2: `cast receive` behind a udp-receiver that damages its stream."""
    nodes = [target(loops, tmp_path, f"t{n}.img") for n in range(3)]
    wrap = damaging_receiver(tmp_path / "wrap")
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(
        f"quiet appliance.job=receive appliance.target={nodes[1].rpartition('/')[2]} "
        "appliance.interface=eth0 appliance.wait=5\n"
    )
    with room(4) as pcs:
        sender, receivers = pcs[0], pcs[1:]
        procs = []
        for n, (pc, node) in enumerate(zip(receivers, nodes, strict=True)):
            env = {"PATH": f"{wrap}:/usr/sbin:/usr/bin:/sbin:/bin"} if n == 2 else None
            log = tmp_path / f"r{n}.log"
            argv = (
                pc.appliance("unattended", "--cmdline", str(cmdline))
                if n == 1
                else receive(pc, node, log, env)
            )
            procs.append((start(argv, log), log))
        send_log = tmp_path / "send.log"
        # linger 30: on a loaded machine the damaged receiver holds the whole small stream in
        # memory and asks for its damaged chunks long after the stream ended
        send = start(
            sender.appliance(
                "cast", "send", "--repo", str(saved.repo), "--image", "base",
                "--receivers", "3", "--wait", "60", "--interface", "eth0",
                "--http-port", str(HTTP_PORT), "--linger", "30", "--json",
            ),
            send_log,
        )  # fmt: skip
        got = [finish(proc, log) for proc, log in procs]
        sent = finish(send, send_log)
    assert sent[0] == 0, sent[2]
    assert result(sent[1])["receivers"] == 3
    for code, _, err in got:
        assert code == 0, err
        assert "Traceback" not in err
    clean = result(got[0][1])
    assert clean["ok"] is True and clean["fetched"] == 0 and clean["damaged"] == 0, clean
    assert clean["stream_complete"] is True and clean["streamed"] > 0
    assert "appliance: unattended receive done: Received image base onto" in got[1][1]
    assert "0 fetched over HTTP" in got[1][1]
    damaged = result(got[2][1])
    assert damaged["ok"] is True and damaged["fetched"] > 0, damaged
    assert damaged["damaged"] > 0 or damaged["skipped_bytes"] > 0, damaged
    for node in nodes:
        assert not marked(node)
        assert_equivalent(saved.source, node, same_size=True)


def test_no_sender_is_one_sentence_and_nothing_written(loops: Loops, tmp_path: Path) -> None:
    node = target(loops, tmp_path, "t.img")
    with room(1) as pcs:
        argv = pcs[0].appliance(
            "cast", "receive", node, "--interface", "eth0", "--yes", "--wait", "2"
        )
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    refused(proc, 4, "No multicast sender was heard within 2 seconds on eth0")
    assert read_bytes(node, 0, len(OLD_HEAD)) == OLD_HEAD


def test_no_receiver_came(saved: Saved, tmp_path: Path) -> None:
    with room(1) as pcs:
        argv = pcs[0].appliance(
            "cast", "send", "--repo", str(saved.repo), "--image", "base",
            "--wait", "2", "--interface", "eth0", "--http-port", str(HTTP_PORT), "--linger", "0",
        )  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    refused(proc, 4, "No receiver came within 2 seconds on eth0; nothing was sent.")


def test_missing_interface(saved: Saved, loops: Loops, tmp_path: Path) -> None:
    node = target(loops, tmp_path, "t.img")
    with room(1) as pcs:
        send = pcs[0].appliance(
            "cast", "send", "--repo", str(saved.repo), "--image", "base", "--interface", "eth9"
        )
        got = subprocess.run(send, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        recv = pcs[0].appliance("cast", "receive", node, "--interface", "eth9", "--yes")
        back = subprocess.run(recv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    refused(got, 2, "There is no network interface eth9 on this machine")
    refused(back, 2, "There is no network interface eth9 on this machine")
    assert read_bytes(node, 0, len(OLD_HEAD)) == OLD_HEAD

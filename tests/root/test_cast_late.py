"""Late joining, in the namespace room of tests/kit/castroom.py: the sender waits 5 s for
two receivers and starts with the one that came (and says so); the second receiver starts
after the stream began, hears nothing from udp-receiver, learns from the sender's web
server (cast.json) that the stream is under way, and restores every chunk over HTTP. Both
disks end equal to the source; the late one says how it got its chunks."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.castroom import room
from kit.diskbuild import GPT_DISK_SIZE, sparse_file
from kit.diskcompare import assert_equivalent
from kit.interrupt import marked
from kit.loops import Loops
from kit.saved import Saved, saved_gpt_disk

pytestmark = [pytest.mark.root, pytest.mark.slow]

TIMEOUT = 300


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Saved]:
    with saved_gpt_disk(tmp_path_factory.mktemp("castlate")) as saved:
        yield saved


def _lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _wait_for_stream(sender: subprocess.Popen[str]) -> list[str]:
    """The sender's progress messages up to the one that says the stream started."""
    assert sender.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 120
    for line in sender.stdout:
        if line.startswith("{"):
            seen.append(str(json.loads(line).get("message", "")))
            if seen[-1].startswith("streaming to"):
                return seen
        assert time.monotonic() < deadline, seen
    raise AssertionError(f"the sender ended before its stream started: {seen}")


def test_a_receiver_that_comes_late_restores_over_http(
    saved: Saved, loops: Loops, tmp_path: Path
) -> None:
    nodes = [loops.attach(sparse_file(tmp_path, f"t{n}.img", GPT_DISK_SIZE)) for n in range(2)]
    with room(3) as (sender, early, late):
        recv = ["cast", "receive", "--interface", "eth0", "--yes", "--json", "--wait", "60"]
        first = subprocess.Popen(
            early.appliance(*recv, nodes[0]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        send = subprocess.Popen(
            sender.appliance(
                "cast", "send", "--repo", str(saved.repo), "--image", "base",
                "--receivers", "2", "--wait", "5", "--interface", "eth0", "--linger", "10",
                "--json", "--progress=json",
            ),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        said = _wait_for_stream(send)
        second = subprocess.run(
            late.appliance(*recv, nodes[1], "--from", f"http://{sender.address}:8090/"),
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        out_first, err_first = first.communicate(timeout=TIMEOUT)
        out_send, err_send = send.communicate(timeout=TIMEOUT)
    assert send.returncode == 0, err_send
    assert said[-1].startswith("streaming to 1 of 2 receivers (1 did not come within 5 s"), said
    sent = _lines(out_send)[-1]
    assert (sent["receivers"], sent["expected"]) == (1, 2), sent
    assert first.returncode == 0, err_first
    assert _lines(out_first)[-1]["late"] is False
    assert second.returncode == 0, second.stderr
    result = _lines(second.stdout)[-1]
    assert result["late"] is True and result["streamed"] == 0, result
    assert isinstance(result["fetched"], int) and result["fetched"] > 0, result
    told = [line for line in second.stderr.splitlines() if "joined after" in line]
    assert told == [
        "appliance: this PC joined after the multicast stream began: every chunk comes over "
        f"HTTP from http://{sender.address}:8090/"
    ], second.stderr
    assert "starting" not in err_send and (
        "appliance: streaming to 1 of 2 receivers (1 did not come within 5 s" in err_send
    ), err_send
    for node in nodes:
        assert not marked(node)
        assert_equivalent(saved.source, node, same_size=True)

"""The sender's room state read from udp-sender's own lines (Debian's udpcast 20120424, as
captured in the namespace room), the announcement it serves, and the summaries that say
how many receivers came and how a late receiver got its chunks."""

from __future__ import annotations

import json

from appliance.jobs.cast import CastCounts, CastResult
from appliance.jobs.castlate import RoomState
from appliance.jobs.castsend import SendResult

SAID = """\
Udp-sender 20120424
Using full duplex mode
Using mcast address 234.77.0.2
UDP sender for (stdin) at 10.77.0.2 on eth0
Broadcasting control to 10.77.0.255
New connection from 10.77.0.3  (#0) 00000009
Starting transfer: 00000009
Transfer complete.
Disconnecting #0 (10.77.0.3)
"""


def test_the_room_learns_when_the_stream_starts_and_with_whom() -> None:
    room = RoomState("lab", "http://10.77.0.2:8090/", expected=3, wait=60)
    started: list[str] = []
    joins: list[str] = []
    room.on_start = started.append
    room.on_join = joins.append
    assert json.loads(room.announce())["state"] == "waiting"
    for line in SAID.splitlines():
        room.feed(line)
    assert room.joined == 1
    assert joins == ["waiting up to 60 s for 3 receivers: 1 joined"]
    assert started == [
        "streaming to 1 of 3 receivers (2 did not come within 60 s; a PC that comes later "
        "fetches the image over HTTP)"
    ]
    assert json.loads(room.announce()) == {
        "image": "lab",
        "http": "http://10.77.0.2:8090/",
        "state": "streaming",
        "receivers": 1,
        "expected": 3,
    }


def test_all_came() -> None:
    room = RoomState("lab", None, expected=1, wait=60)
    for line in SAID.splitlines():
        room.feed(line)
    assert room.started_words() == "streaming to 1 receiver"


def test_summaries() -> None:
    sent = SendResult("lab", 2, 1000, 1.5, None, expected=3, wait=60)
    assert sent.line() == (
        "Sent image lab to 2 of 3 receivers (1 did not come within 60 s): 1000 bytes in 1.5 s."
    )
    assert sent.to_json()["expected"] == 3
    late = CastResult("lab", "/dev/sda", 9.0, CastCounts(fetched=12), 0, False, "http://s/")
    assert late.line() == (
        "Received image lab onto /dev/sda in 9.0 s: this PC joined after the stream began, "
        "so all 12 chunks were fetched over HTTP from http://s/; every chunk was checked "
        "against its name."
    )
    assert late.to_json()["late"] is True


def test_a_receiver_that_left_before_the_end_is_counted() -> None:
    """udp-receiver leaves with a disconnect when its reader stops (a refused key, a failed
    disk): before "Transfer complete" it did not get the image; after, it did."""
    room = RoomState("lab", None, expected=2, wait=60)
    said = SAID.replace(
        "Starting transfer: 00000009\n",
        "New connection from 10.77.0.4  (#1) 00000009\nStarting transfer: 00000009\n"
        "Disconnecting #1 (10.77.0.4)\n",
    )
    for line in said.splitlines():
        room.feed(line)
    assert (room.joined, room.left) == (2, 1)
    dropped = RoomState("lab", None, expected=1, wait=60)
    for line in SAID.replace("Transfer complete.\n", "Dropping client #0 because of timeout\n"
                             "Transfer complete.\n").splitlines():  # fmt: skip
        dropped.feed(line)
    assert (dropped.joined, dropped.left) == (1, 1)
    finished = RoomState("lab", None, expected=1, wait=60)
    for line in SAID.splitlines():
        finished.feed(line)
    assert (finished.joined, finished.left) == (1, 0)
    sent = SendResult("lab", 2, 1000, 1.5, None, expected=2, wait=60, left=1)
    assert sent.line() == (
        "Sent image lab to 2 receivers; 1 of them left before the end and did not get it (the "
        "reason is on that PC's screen): 1000 bytes in 1.5 s."
    )
    assert sent.to_json()["left"] == 1

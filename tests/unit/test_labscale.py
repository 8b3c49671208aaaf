"""The lab-restore bench rows (bench/labscale.py): the aggregate and per-client figures of a
run and the lines `make bench` prints for them."""

from __future__ import annotations

from bench.labscale import Row, targets


def test_rows_share_the_time_of_the_slowest_client() -> None:
    row = Row("multicast", 4, 500_000_000, 10.0)
    assert (row.aggregate, row.per_client) == (200.0, 50.0)
    assert row.line() == (
        "4 clients over multicast (udpcast): 200 MB/s aggregate, 50 MB/s per client (10.0 s)"
    )
    [line] = targets({"rows": [Row("http", 2, 500_000_000, 5.0).to_json()]})
    assert line.ok is None  # reported: this machine is not a room
    assert line.line().startswith(
        "INFO  lab restore, 2 client(s) at once over HTTP from nginx on loopback: "
        "200 MB/s aggregate, 100 MB/s per client; 500 MB used each, 5.0 s"
    )

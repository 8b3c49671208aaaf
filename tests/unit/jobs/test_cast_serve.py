"""The sender's repository served key by key (a bucket's or another web server's store,
which is no folder here), read back by the receivers' own client (HttpStore) over a real
socket on 127.0.0.1; and the sender's reads of such a store, a bounded number ahead."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import urllib3
from kit.webserve import free_port

from appliance.errors import RepositoryError
from appliance.jobs.castsend import fetched_ahead
from appliance.jobs.castserve import serve_store
from appliance.repo.chunk import Encoder, content_hash
from appliance.repo.httpstore import HttpStore
from appliance.repo.repository import Repository, chunk_key
from appliance.repo.store import LocalStore


def test_a_store_is_served_to_the_receivers_client(tmp_path: Path) -> None:
    repo = Repository.create(LocalStore(tmp_path / "repo"))
    data = bytes(range(256)) * 8192
    name = content_hash(data)
    repo.put_chunk(name, Encoder().encode(data))
    repo.write_file("images/lab/manifest.json", b'{"name": "lab"}')
    (tmp_path / "repo" / "lock").write_text("secret-ish: not for receivers")
    port = free_port()
    with serve_store(repo.store, "127.0.0.1", port, lambda: b"{}") as seen:
        before = seen[0]
        far = Repository.in_store(HttpStore(f"http://127.0.0.1:{port}/", backoff=0.01))
        assert far.get_chunk(name) == repo.get_chunk(name)
        assert far.has_chunk(name)  # a HEAD-sized range read of its header
        assert far.read("images/lab/manifest.json") == b'{"name": "lab"}'
        assert not far.has_chunk("0" * 64)
        assert seen[0] > before  # the sender lingers while receivers ask
        plain = urllib3.PoolManager()
        lock = plain.request("GET", f"http://127.0.0.1:{port}/lock")
        assert lock.status == 404  # only what a receiver reads is served
        outside = plain.request("GET", f"http://127.0.0.1:{port}/images/../lock")
        assert outside.status == 404
        tail = plain.request(
            "GET", f"http://127.0.0.1:{port}/{chunk_key(name)}", headers={"Range": "bytes=10-"}
        )
        whole = repo.get_chunk(name)
        assert tail.status == 206 and tail.data == whole[10:]
        beyond = plain.request(
            "GET",
            f"http://127.0.0.1:{port}/{chunk_key(name)}",
            headers={"Range": f"bytes={len(whole)}-"},
        )
        assert beyond.status == 416
    with pytest.raises(RepositoryError, match="cannot be reached"):
        HttpStore(f"http://127.0.0.1:{port}/", attempts=1).get("repo.json")


def test_chunks_are_fetched_ahead_in_order_and_bounded() -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def fetch(name: str) -> bytes:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.01 if int(name) % 3 else 0.03)  # some answers come late
        with lock:
            running -= 1
        return name.encode()

    names = [str(n) for n in range(40)]
    got = list(fetched_ahead(iter(names), fetch, 4))
    assert got == [(n, n.encode()) for n in names]
    assert 1 < most <= 5  # the ones waiting to be taken, and one more asked for
    assert list(fetched_ahead(iter(names[:3]), fetch, 1)) == [(n, n.encode()) for n in names[:3]]

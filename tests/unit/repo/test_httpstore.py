"""HttpStore against a real web server in the test's own thread (Python's http.server on
127.0.0.1: HTTP/1.0, no Range support) and the fault proxy of tests/kit/webserve.py; the
folder listings are pages captured from nginx 1.22 and Python 3.11's http.server."""

from __future__ import annotations

import errno
import io
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kit.webserve import FaultProxy, Faults, free_port

from appliance.errors import CorruptData, RepositoryError
from appliance.repo.chunk import Encoder, content_hash
from appliance.repo.httpstore import HttpStore, listing_entries
from appliance.repo.repository import Repository, check_writable, chunk_key, open_store
from appliance.repo.store import LocalStore

NGINX_PAGE = """<html>
<head><title>Index of /images/</title></head>
<body>
<h1>Index of /images/</h1><hr><pre><a href="../">../</a>
<a href="lab_2026%2Ba/">lab_2026+a/</a>                                        01-Dec-2026 21:04  -
<a href="win-10/">win-10/</a>                                            01-Dec-2026 21:04  -
<a href="notes.txt">notes.txt</a>                                          01-Dec-2026 21:04  0
</pre><hr></body>
</html>
"""
HTTP_SERVER_PAGE = """<!DOCTYPE HTML>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Directory listing for /images/</title>
</head>
<body>
<h1>Directory listing for /images/</h1>
<hr>
<ul>
<li><a href=".hidden">.hidden</a></li>
<li><a href="lab_2026%2Ba/">lab_2026+a/</a></li>
<li><a href="notes.txt">notes.txt</a></li>
<li><a href="win-10/">win-10/</a></li>
</ul>
<hr>
</body>
</html>
"""
APACHE_PAGE = """<html><head><title>Index of /repo/images</title></head><body>
<h1>Index of /repo/images</h1><table>
<tr><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th></tr>
<tr><td><a href="/repo/">Parent Directory</a></td></tr>
<tr><td><a href="lab_2026%2ba/">lab_2026+a/</a></td></tr>
<tr><td><a href="win-10/">win-10/</a></td></tr>
<tr><td><a href="notes.txt">notes.txt</a></td></tr>
<tr><td><a href="http://elsewhere.example/x/">elsewhere</a></td></tr>
</table></body></html>
"""


@pytest.mark.parametrize("page", [NGINX_PAGE, HTTP_SERVER_PAGE, APACHE_PAGE])
def test_folder_listings_of_three_servers(page: str) -> None:
    folders, files = listing_entries(page)
    assert sorted(folders) == ["lab_2026+a", "win-10"]
    assert files == ["notes.txt"]


@pytest.fixture
def repo_folder(tmp_path: Path) -> tuple[Path, str, bytes]:
    """A repository folder with one chunk and one image folder; the chunk's name and file."""
    repo = Repository.create(LocalStore(tmp_path / "repo"))
    data = bytes(range(256)) * 4096
    name = content_hash(data)
    blob = Encoder().encode(data)
    repo.put_chunk(name, blob)
    repo.write_file("images/lab/manifest.json", b"{}")
    return tmp_path / "repo", name, blob


class Handler(SimpleHTTPRequestHandler):
    """Python's file server, quiet; `listing` False answers 403 for a folder (nginx's
    answer when autoindex is off)."""

    listing = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def list_directory(self, path: str | os.PathLike[str]) -> io.BytesIO | None:
        if self.listing:
            return super().list_directory(path)
        self.send_error(403)
        return None


@contextmanager
def serving(folder: Path, *, listing: bool = True) -> Iterator[str]:
    """Python's http.server in a thread of the test, serving `folder`; its base URL."""
    handler = partial(type("H", (Handler,), {"listing": listing}), directory=str(folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def server(repo_folder: tuple[Path, str, bytes]) -> Iterator[str]:
    with serving(repo_folder[0].parent) as base:
        yield base


def test_reads_a_repository(repo_folder: tuple[Path, str, bytes], server: str) -> None:
    _, name, blob = repo_folder
    store = HttpStore(f"{server}/repo", backoff=0.01)
    assert store.where == f"{server}/repo/"
    repo = Repository.in_store(store)
    assert repo.image_names() == ["lab"]
    assert repo.get_chunk(name) == blob
    assert repo.has_chunk(name)
    assert store.head(chunk_key(name), 16) == (blob[:16], len(blob))
    assert store.size(chunk_key(name)) == len(blob)
    assert sorted(store.list("images/")) == ["images/lab/manifest.json"]
    assert not store.exists("images/other/manifest.json")
    with pytest.raises(FileNotFoundError):
        store.get("images/other/manifest.json")
    assert store.folders("nothing/") == []
    assert repo.read_parallelism > 1


def test_503_is_tried_again_then_told(server: str) -> None:
    faults = Faults(unavailable={"repo.json": 2})
    with FaultProxy(server, faults) as proxy:
        store = HttpStore(f"{proxy.url}/repo/", attempts=3, backoff=0.01)
        assert b"appliance-repository" in store.get("repo.json")
        assert len(faults.requests("/repo/repo.json")) == 3
        faults.unavailable["repo.json"] = 3
        with pytest.raises(RepositoryError) as err:
            store.get("repo.json")
    assert str(err.value) == (
        f"The web server at {proxy.url} answered 503 Service Unavailable for repo.json (3 tries)."
    )


def test_a_server_that_does_not_answer_in_time(server: str) -> None:
    faults = Faults(stall={"repo.json": 1}, pause=0.6)
    with FaultProxy(server, faults) as proxy:
        store = HttpStore(f"{proxy.url}/repo/", backoff=0.01, timeout=0.2)
        assert b"appliance-repository" in store.get("repo.json")  # asked again in time
        faults.stall["repo.json"] = 2
        store.attempts = 2
        with pytest.raises(RepositoryError) as err:
            store.get("repo.json")
    assert str(err.value) == (
        f"The web server at {proxy.url} did not answer in time for repo.json (2 tries)."
    )


def test_a_cut_body_is_read_again(repo_folder: tuple[Path, str, bytes], server: str) -> None:
    _, name, blob = repo_folder
    faults = Faults(cut={name: 2})
    with FaultProxy(server, faults) as proxy:
        store = HttpStore(f"{proxy.url}/repo/", backoff=0.01)
        assert store.get(chunk_key(name)) == blob
    ranges = [r[2] for r in faults.requests(name)]
    # this server ignores Range: each resume is answered with the whole chunk again
    assert ranges == ["", f"bytes={len(blob) // 2}-", f"bytes={len(blob) // 2}-"]


def test_a_cut_that_does_not_stop_is_told(
    repo_folder: tuple[Path, str, bytes], server: str
) -> None:
    _, name, _ = repo_folder
    with FaultProxy(server, Faults(cut={name: 9})) as proxy:
        store = HttpStore(f"{proxy.url}/repo/", attempts=3, backoff=0.01)
        with pytest.raises(RepositoryError, match=f"broke off sending {chunk_key(name)} 3 times"):
            store.get(chunk_key(name))


def test_an_unreachable_server_is_one_sentence() -> None:
    where = f"http://127.0.0.1:{free_port()}"
    store = HttpStore(f"{where}/repo/", attempts=2, backoff=0.01)
    with pytest.raises(RepositoryError) as err:
        store.get("repo.json")
    assert str(err.value) == (
        f"The web server at {where} cannot be reached: the connection was refused (2 tries)."
    )


def test_a_listing_that_is_refused_is_one_sentence(repo_folder: tuple[Path, str, bytes]) -> None:
    with serving(repo_folder[0].parent, listing=False) as base:
        repo = Repository.in_store(HttpStore(f"{base}/repo/", backoff=0.01))
        with pytest.raises(RepositoryError) as err:
            repo.image_names()
        assert repo.read("images/lab/manifest.json") == b"{}"  # a named file is still read
    assert str(err.value).startswith(
        f"The web server at {base} does not list the folder images/ (it answered 403 Forbidden)"
    )


def test_writing_is_refused(repo_folder: tuple[Path, str, bytes], server: str) -> None:
    store = HttpStore(f"{server}/repo/")
    with pytest.raises(OSError) as err:
        store.put("x", b"y", durable=True)
    assert err.value.errno == errno.EROFS
    repo = Repository.in_store(store)
    with pytest.raises(RepositoryError) as refused:
        repo.lock("gc")
    assert str(refused.value) == (
        f"The repository at {server}/repo/ is on a web server, which is read-only; gc needs "
        "a repository it can write (a folder on a disk or a share)."
    )
    with pytest.raises(RepositoryError, match="saving an image needs"):
        check_writable(open_store(f"{server}/repo/"), "saving an image")
    with pytest.raises(RepositoryError, match="saving an image needs"):
        Repository.open_for_save(f"{server}/repo/")


def test_a_damaged_chunk_names_the_server(server: str) -> None:
    repo = Repository.in_store(HttpStore(f"{server}/repo/"))
    named = repo.damaged_chunk(
        "ab" * 32, CorruptData(f"Chunk {'ab' * 32} does not match its hash.")
    )
    assert str(named) == (
        f"The web server at {server} sent chunk {'ab' * 32} with wrong content "
        "(it does not match its hash)."
    )


@pytest.mark.parametrize(
    "address",
    ["http://user:secret@127.0.0.1/repo/", "http://127.0.0.1/repo/?x=1", "http:///repo/"],
)
def test_addresses_that_are_refused(address: str) -> None:
    with pytest.raises(RepositoryError) as err:
        open_store(address)
    assert "secret" not in str(err.value)


def test_heads_from_a_server_that_ignores_range_give_their_connection_back(
    repo_folder: tuple[Path, str, bytes], server: str
) -> None:
    """http.server answers a range with the whole value: head() closes that connection and
    must give its place back to the pool, or the pool (it blocks when full) hangs."""
    _, name, blob = repo_folder
    store = HttpStore(f"{server}/repo/", connections=2)
    heads: list[tuple[bytes, int]] = []
    worker = threading.Thread(
        target=lambda: heads.extend(store.head(chunk_key(name), 16) for _ in range(6)),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "the pool hung"
    assert heads == [(blob[:16], len(blob))] * 6

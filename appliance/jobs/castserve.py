"""The sender's repository over HTTP, read-only, for the receivers of a multicast: what
the stream lost or damaged, and everything for a receiver that joined too late, is fetched
from here (appliance.jobs.cast's Fallback reads it with HttpStore).

A folder on this machine (a local disk, or a share `cast send` mounted: ssh://, smb://,
nfs://) is served as plain files by http.server. A repository that is not a folder here (a
bucket, another web server) is served key by key from its store: GET and HEAD of the keys a
receiver reads (repo.json, key.json, images/..., chunks/...), with a single byte range, so that the
receivers need to reach only the sender, never the bucket or the first web server.

Both record the time of their last request: the sender stays until no receiver asked for
anything for a while after the stream (`linger`).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from appliance.errors import ApplianceError, UsageError
from appliance.jobs.castlate import ANNOUNCE
from appliance.repo.store import Store, check_key

RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")
SERVED = ("chunks/", "images/")


Announce = Callable[[], bytes]


def _announced(handler: http.server.BaseHTTPRequestHandler, announce: Announce, body: bool) -> bool:
    """Answer a request for cast.json (the sender's state: appliance.jobs.castlate) with
    `announce()`; False for any other path."""
    if urlsplit(handler.path).path != f"/{ANNOUNCE}":
        return False
    data = announce()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.send_header("Cache-Control", "no-store")
    handler.end_headers()
    if body:
        handler.wfile.write(data)
    return True


class _Quiet(http.server.SimpleHTTPRequestHandler):
    seen: list[float]
    announce: Announce

    def log_message(self, format: str, *args: Any) -> None:
        self.seen[0] = time.monotonic()

    def do_GET(self) -> None:
        if not _announced(self, type(self).announce, True):
            super().do_GET()

    def do_HEAD(self) -> None:
        if not _announced(self, type(self).announce, False):
            super().do_HEAD()


class _StoreHandler(http.server.BaseHTTPRequestHandler):
    """GET and HEAD of a store's keys: 200, 206 for one range, 404, 416."""

    store: Store
    seen: list[float]
    announce: Announce
    protocol_version = "HTTP/1.1"  # keep-alive: the receivers' pool reuses connections

    def log_message(self, format: str, *args: Any) -> None:
        self.seen[0] = time.monotonic()

    def do_GET(self) -> None:
        if not _announced(self, type(self).announce, True):
            self._answer(body=True)

    def do_HEAD(self) -> None:
        if not _announced(self, type(self).announce, False):
            self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        key = unquote(urlsplit(self.path).path).lstrip("/")
        try:
            if key not in ("repo.json", "key.json") and not key.startswith(SERVED):
                raise ValueError(key)  # only what a receiver reads
            data = self.store.get(check_key(key))
        except (ValueError, FileNotFoundError):
            self.send_error(404)
            return
        except (OSError, ApplianceError):  # the store failed: the receiver tries again
            self.send_error(503)
            return
        status, start, end = 200, 0, len(data)
        wanted = RANGE_RE.match(self.headers.get("Range", ""))
        if wanted:
            first = int(wanted.group(1))
            if first >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            last = int(wanted.group(2)) if wanted.group(2) else len(data) - 1
            status, start, end = 206, first, min(last, len(data) - 1) + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        if body:
            self.wfile.write(memoryview(data)[start:end])


@contextlib.contextmanager
def _serving(handler: Any, address: str, port: int) -> Iterator[None]:
    try:
        server = http.server.ThreadingHTTPServer((address, port), handler)
    except OSError as exc:
        raise UsageError(
            f"The web server for the fallback cannot listen on {address}:{port}: "
            f"{exc.strerror}; choose another --http-port."
        ) from exc
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="cast-http", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def serve_folder(
    folder: Path, address: str, port: int, announce: Announce
) -> Iterator[list[float]]:
    """The folder served read-only over HTTP on address:port until the block ends, and
    cast.json from `announce`; yields [monotonic time of the last request]."""
    seen = [time.monotonic()]
    handler = type("Handler", (_Quiet,), {"seen": seen, "announce": staticmethod(announce)})
    with _serving(functools.partial(handler, directory=str(folder)), address, port):
        yield seen


@contextlib.contextmanager
def serve_store(store: Store, address: str, port: int, announce: Announce) -> Iterator[list[float]]:
    """The store's keys served read-only over HTTP (see the module's doc); as serve_folder."""
    seen = [time.monotonic()]
    fields = {"seen": seen, "store": store, "announce": staticmethod(announce)}
    handler = type("Handler", (_StoreHandler,), fields)
    with _serving(handler, address, port):
        yield seen

"""Web servers for tests, all on 127.0.0.1 and a free port, started as the test's own
processes or threads and stopped by their PID at the end:

- `nginx` (Debian's nginx-light): a folder served as plain files, with or without its
  folder listing (autoindex), over HTTP or HTTPS (a self-signed certificate made here);
- `http_server`: `python3 -m http.server` (another listing page, no Range support, HTTP/1.0);
- `FaultProxy`: a thread that forwards to one of those and breaks what it is told to: answers
  503 or nothing for a while a number of times, cuts a body half-way, flips a byte; it
  records every request.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(
    port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15
) -> None:
    """Until something listens on 127.0.0.1:`port`; the server's log if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited {proc.returncode}: {log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}: {log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen[bytes], grace: float = 10) -> None:
    """SIGTERM (nginx: fast shutdown of the master and its workers), SIGKILL after `grace`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (openssl), for an HTTPS server."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    argv += ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
    subprocess.run(
        [*argv, "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


NGINX_CONF = """\
user root;
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{ text/html html; application/json json; }}
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port}{ssl};
        {tls}
        root {root};
        autoindex {autoindex};
    }}
}}
"""


@contextmanager
def nginx(root: Path, work: Path, *, autoindex: bool = True, tls: bool = False) -> Iterator[str]:
    """nginx serving `root` (its files under / ); yields its base URL ("http://127.0.0.1:P")."""
    with nginx_process(root, work, autoindex=autoindex, tls=tls) as (base, _):
        yield base


@contextmanager
def nginx_process(
    root: Path, work: Path, *, autoindex: bool = True, tls: bool = False
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """nginx as `nginx` starts it, with its master process too, for a test that stops the
    server by its PID in the middle of a job (SIGTERM: the master stops its workers)."""
    prefix = work / f"nginx-{free_port()}"
    prefix.mkdir(parents=True)
    port = free_port()
    lines = ""
    if tls:
        cert, key = self_signed(prefix)
        lines = f"ssl_certificate {cert}; ssl_certificate_key {key};"
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            prefix=prefix,
            port=port,
            root=root,
            autoindex="on" if autoindex else "off",
            ssl=" ssl" if tls else "",
            tls=lines,
        )
    )
    log = prefix / "stderr.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_listening(port, proc, log)
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", proc
    finally:
        stop_server(proc)


@contextmanager
def http_server(root: Path, work: Path) -> Iterator[str]:
    """`python3 -m http.server` serving `root`; yields its base URL."""
    port = free_port()
    log = work / f"http-server-{port}.log"
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1"]
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [*argv, "--directory", str(root), str(port)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_listening(port, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)


@dataclass
class Faults:
    """What the proxy breaks, by the end of a request's path."""

    unavailable: dict[str, int] = field(default_factory=dict)  # 503 that many times
    cut: dict[str, int] = field(default_factory=dict)  # body (> 64 bytes) cut half-way, N times
    flip: set[str] = field(default_factory=set)  # a byte of the body (> 64 bytes) flipped
    stall: dict[str, int] = field(default_factory=dict)  # no answer for `pause` s, N times
    pause: float = 1.0
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, Range

    def requests(self, suffix: str) -> list[tuple[str, str, str]]:
        return [r for r in self.seen if r[1].endswith(suffix)]


class FaultProxy:
    """A keep-alive HTTP/1.1 proxy in a thread of the test, in front of `upstream`."""

    def __init__(self, upstream: str, faults: Faults | None = None) -> None:
        self.upstream = urlsplit(upstream)
        self.faults = faults or Faults()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy.handle(self, "GET")

            def do_HEAD(self) -> None:
                proxy.handle(self, "HEAD")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def _take(self, table: dict[str, int], path: str) -> bool:
        with self.lock:
            for suffix, left in table.items():
                if path.endswith(suffix) and left > 0:
                    table[suffix] = left - 1
                    return True
        return False

    def handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        faults = self.faults
        ranged = req.headers.get("Range", "")
        with self.lock:
            faults.seen.append((method, req.path, ranged))
        if self._take(faults.stall, req.path):
            time.sleep(faults.pause)  # the client gives up first; the answer comes too late
        if self._take(faults.unavailable, req.path):
            req.send_response(503)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        conn = http.client.HTTPConnection(self.upstream.hostname or "", self.upstream.port)
        try:
            conn.request(method, req.path, headers={"Range": ranged} if ranged else {})
            answer = conn.getresponse()
            body = answer.read()
            headers = [
                (k, v)
                for k, v in answer.getheaders()
                if k.lower() in ("content-type", "content-range", "etag")
            ]
        finally:
            conn.close()
        whole = method == "GET" and len(body) > 64  # not the 16-byte head of a chunk
        if whole and any(req.path.endswith(s) for s in faults.flip):
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
        cut = whole and self._take(faults.cut, req.path)
        req.send_response(answer.status)
        for key, value in headers:
            req.send_header(key, value)
        # the body was read whole (nginx sends a listing chunked): its length, once known
        length = answer.getheader("Content-Length") if method == "HEAD" else str(len(body))
        req.send_header("Content-Length", length or "0")
        req.end_headers()
        if method == "HEAD":
            return
        if cut:  # the whole length announced, half of it sent, then the connection dropped
            req.wfile.write(body[: len(body) // 2])
            req.wfile.flush()
            req.close_connection = True
            req.connection.shutdown(socket.SHUT_RDWR)
            return
        req.wfile.write(body)

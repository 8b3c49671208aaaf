"""A repository that a web server serves as plain files (nginx, Apache, `python3 -m
http.server`, a CDN), read over HTTP or HTTPS: `HttpStore`, the read side of `Store`.

- One urllib3 pool of keep-alive connections; its size bounds how many requests run at once
  (a caller that asks for more waits for a free connection).
- A timeout, a dropped connection, a 5xx or a 429 answer is tried again, `ATTEMPTS` times in
  all with a doubling pause; then one sentence names the server and what it did last.
- A body cut in the middle is resumed from where it stopped with a Range request (a server
  that ignores Range sends the whole value again).
- Listing a folder reads the server's own folder listing (nginx `autoindex`, Apache
  `Indexes`, `http.server`): the links of the HTML page. A server that lists nothing gets a
  sentence; the jobs that name their image (restore, verify, info) need no listing.
- Writing is refused: the jobs that write (save, import, gc, delete) are stopped before they
  start (`read_only`), and each write method raises EROFS as a last guard.

Chunks are checked against their names by the repository as they are decoded; a chunk that
fails names this server (Repository.damaged_chunk). TLS uses the system's CA bundle.
"""

from __future__ import annotations

import builtins
import errno
import mmap
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import quote, unquote, urlsplit

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, ReadTimeoutError, SSLError

from appliance.errors import NetworkError, RepositoryError
from appliance.repo.store import ReadOnlyWrites, check_key

CONNECT_TIMEOUT = 10.0  # seconds
READ_TIMEOUT = 30.0  # seconds without a byte
ATTEMPTS = 5  # tries of one request in all
BACKOFF = 0.25  # seconds before the second try; doubled before each next one
CONNECTIONS = 16  # kept alive; also the most requests at once
PARALLEL_READS = 8  # chunks a restore fetches at once (Repository.read_parallelism)
PIECE = 1024 * 1024  # bytes read from a body at a time


class _Links(HTMLParser):
    """The href of every <a> of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [value for name, value in attrs if name == "href" and value]


def listing_entries(page: str) -> tuple[list[str], list[str]]:
    """The (folders, files) a server's folder listing links to: relative links of one part
    (an entry's own name), not the parent, sort links ('?C=N'), or other places."""
    parser = _Links()
    parser.feed(page)
    parser.close()
    folders: list[str] = []
    files: list[str] = []
    for href in parser.hrefs:
        if any(c in href for c in "?#:") or href.startswith("/"):
            continue
        name = unquote(href.removeprefix("./"))
        folder = name.endswith("/")
        name = name.rstrip("/") if folder else name
        if not name or "/" in name or name.startswith("."):
            continue
        out = folders if folder else files
        if name not in out:
            out.append(name)
    return folders, files


def _cause(exc: BaseException) -> str:
    """Why a request failed, for a sentence."""
    reason = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
    text = str(reason)
    lowered = text.lower()
    if "refused" in lowered:
        return "the connection was refused"
    if "name or service not known" in lowered or "name resolution" in lowered:
        return "its name is not known"
    if "timed out" in lowered or "timeout" in lowered:
        return "it did not answer in time"
    if "unreachable" in lowered:
        return "the network is unreachable"
    if "incompleteread" in lowered or "broken" in lowered:
        return "the body was cut short"
    if "reset" in lowered or "aborted" in lowered or "closed" in lowered:
        return "it closed the connection"
    return text.rpartition(": ")[2].rstrip(".") or type(reason).__name__


def _failure(exc: BaseException, key: str) -> str:
    """What a server did when a request for `key` failed, after "The web server at X"."""
    reason = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
    if isinstance(reason, ReadTimeoutError):  # connected, then no answer
        return f"did not answer in time for {key}"
    return f"cannot be reached: {_cause(exc)}"


class HttpStore(ReadOnlyWrites):
    """The keys of a repository under a URL, read-only (see the module's doc)."""

    refusal = "a web server is read-only"

    def __init__(
        self,
        url: str,
        *,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF,
        connections: int = CONNECTIONS,
        timeout: float = READ_TIMEOUT,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise RepositoryError(f"{url} is not a web address of a repository.")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise RepositoryError(
                f"The web address {parts.scheme}://{parts.hostname}/... holds a user name, "
                "a password, a query or a fragment; name the repository's folder alone."
            )
        self.server = f"{parts.scheme.lower()}://{parts.netloc}"
        self._base = f"{self.server}{parts.path.rstrip('/')}/"
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.parallel_reads = min(PARALLEL_READS, connections)
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=connections,
            block=True,  # the pool bounds the requests at once
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=timeout),
            retries=urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5),
            headers={"User-Agent": "appliance", "Accept-Encoding": "identity"},
        )

    @property
    def where(self) -> str:
        return self._base

    def read_only(self, job: str) -> RepositoryError:
        """The sentence for a job that would write here."""
        return RepositoryError(
            f"The repository at {self._base} is on a web server, which is read-only; "
            f"{job} needs a repository it can write (a folder on a disk or a share)."
        )

    # -- requests ------------------------------------------------------------------------
    def _url(self, key: str) -> str:
        return self._base + quote(key)

    def _pause(self, attempt: int) -> None:
        time.sleep(self.backoff * 2**attempt)

    def _request(
        self, method: str, key: str, headers: dict[str, str] | None = None
    ) -> urllib3.BaseHTTPResponse:
        """The server's answer (any status but 5xx and 429), its body not read yet; connection
        failures, 5xx and 429 (too many requests) are tried again, then the last one is told
        in one sentence."""
        url = self._url(key)
        failure = ""
        lost = False
        for attempt in range(self.attempts):
            if attempt:
                self._pause(attempt - 1)
            try:
                resp = self._pool.request(method, url, headers=headers, preload_content=False)
            except SSLError as exc:
                raise self._tls_error(exc) from exc
            except MaxRetryError as exc:
                if isinstance(exc.reason, SSLError):
                    raise self._tls_error(exc.reason) from exc
                if "redirect" in str(exc).lower():
                    raise RepositoryError(
                        f"The web server at {self.server} redirects {key} again and again."
                    ) from exc
                failure, lost = _failure(exc, key), True
                continue
            except (HTTPError, OSError) as exc:
                failure, lost = _failure(exc, key), True
                continue
            if resp.status < 500 and resp.status != 429:
                return resp
            failure = f"answered {resp.status} {resp.reason or ''}".rstrip() + f" for {key}"
            lost = False
            resp.drain_conn()
            resp.release_conn()
        tries = f"{self.attempts} tr{'ies' if self.attempts > 1 else 'y'}"
        # no answer at all is the network's failure (exit 12); an error page is the server's
        kind = NetworkError if lost else RepositoryError
        raise kind(f"The web server at {self.server} {failure} ({tries}).")

    def _tls_error(self, exc: BaseException) -> RepositoryError:
        return RepositoryError(
            f"The web server at {self.server} could not be checked over TLS ({_cause(exc)}); "
            "its certificate must be one the system's CA bundle trusts."
        )

    def _refused(self, resp: urllib3.BaseHTTPResponse, key: str) -> Exception:
        """An answer that is not the value: 404 is a missing key, the rest a sentence."""
        resp.drain_conn()
        resp.release_conn()
        if resp.status in (404, 410):
            return FileNotFoundError(errno.ENOENT, "not on the web server", key)
        answer = f"{resp.status} {resp.reason or ''}".strip()
        return RepositoryError(f"The web server at {self.server} answered {answer} for {key}.")

    # -- reading -------------------------------------------------------------------------
    def get(self, key: str) -> bytes:
        check_key(key)
        pieces: list[bytes] = []
        got = 0
        cuts = 0
        while True:
            headers = {"Range": f"bytes={got}-"} if got else None
            resp = self._request("GET", key, headers)
            if resp.status not in (200, 206):
                raise self._refused(resp, key)
            if got and resp.status == 206 and not _starts_at(resp, got):
                _drop(resp)  # not the rest that was asked for: start again from byte 0
                pieces, got = [], 0
                continue
            if got and resp.status == 200:
                pieces, got = [], 0  # the server ignores Range: the whole value again
            try:
                for piece in _body(resp):
                    pieces.append(piece)
                    got += len(piece)
                resp.release_conn()
                return b"".join(pieces)  # one piece (the usual case) is not copied
            except (HTTPError, OSError) as exc:
                # a body cut short (urllib3 checks Content-Length) or a stalled one
                _drop(resp)
                cuts += 1
                if cuts >= self.attempts:
                    raise NetworkError(
                        f"The web server at {self.server} broke off sending {key} "
                        f"{cuts} times ({_cause(exc)})."
                    ) from exc
                self._pause(cuts - 1)

    def read_into(self, key: str, buffer: bytearray | mmap.mmap) -> int:
        data = self.get(key)[: len(buffer)]
        buffer[: len(data)] = data
        return len(data)

    def head(self, key: str, length: int) -> tuple[bytes, int]:
        check_key(key)
        for cuts in range(self.attempts):
            if cuts:
                self._pause(cuts - 1)
            resp = self._request("GET", key, {"Range": f"bytes=0-{max(length, 1) - 1}"})
            if resp.status == 416:  # an empty value has no byte 0
                resp.drain_conn()
                resp.release_conn()
                return b"", 0
            if resp.status not in (200, 206):
                raise self._refused(resp, key)
            total = _total(resp)
            want = length if total is None else min(length, total)
            try:
                data = resp.read(length, decode_content=False)
                if len(data) < want:
                    raise urllib3.exceptions.IncompleteRead(len(data), want - len(data))
            except (HTTPError, OSError) as exc:  # cut short: asked again
                _drop(resp)
                error: BaseException = exc
                continue
            if resp.status == 200:
                _drop(resp)  # the server ignored Range: drop the rest of the body with the link
            else:
                resp.release_conn()
            return data[:length], total if total is not None else len(data)
        raise NetworkError(
            f"The web server at {self.server} broke off sending {key} "
            f"{self.attempts} times ({_cause(error)})."
        )

    def _head(self, key: str) -> urllib3.BaseHTTPResponse:
        resp = self._request("HEAD", check_key(key))
        resp.drain_conn()
        resp.release_conn()
        return resp

    def size(self, key: str) -> int:
        resp = self._head(key)
        length = resp.headers.get("Content-Length")
        if resp.status != 200:
            raise self._refused(resp, key)
        if length is None or not length.isdigit():
            return len(self.get(key))
        return int(length)

    def exists(self, key: str) -> bool:
        resp = self._head(key)
        if resp.status in (404, 410):
            return False
        if resp.status != 200:
            raise self._refused(resp, key)
        return True

    def _listing(self, prefix: str) -> tuple[list[str], list[str]] | None:
        """The (folders, files) of the folder `prefix`; None when it is not there."""
        folder = prefix.rstrip("/")
        check_key(folder)
        resp = self._request("GET", f"{folder}/")
        if resp.status in (404, 410):
            resp.drain_conn()
            resp.release_conn()
            return None
        kind = resp.headers.get("Content-Type", "")
        if resp.status != 200 or "html" not in kind.lower():
            resp.drain_conn()
            resp.release_conn()
            answer = f"{resp.status} {resp.reason or ''}".strip() if resp.status != 200 else kind
            raise RepositoryError(
                f"The web server at {self.server} does not list the folder {folder}/ "
                f"(it answered {answer or 'no page'}), so what it holds cannot be named; "
                "turn its folder listing on (nginx: autoindex on; Apache: Options +Indexes) "
                "or name the image with --image."
            )
        try:
            page = resp.read(decode_content=True)
        except (HTTPError, OSError) as exc:
            raise RepositoryError(
                f"The web server at {self.server} broke off its listing of {folder}/ "
                f"({_cause(exc)})."
            ) from exc
        finally:
            resp.release_conn()
        charset = resp.headers.get("Content-Type", "").partition("charset=")[2] or "utf-8"
        return listing_entries(page.decode(charset.strip() or "utf-8", errors="replace"))

    def list(self, prefix: str) -> Iterator[str]:
        top = prefix.rstrip("/")
        found = self._listing(top)
        if found is None:
            return
        folders, files = found
        for name in files:
            yield f"{top}/{name}"
        for name in folders:
            yield from self.list(f"{top}/{name}/")

    def folders(self, prefix: str) -> builtins.list[str]:
        found = self._listing(prefix)
        return [] if found is None else found[0]

    # -- writing: refused (ReadOnlyWrites) -----------------------------------------------

    def sync(self) -> None:
        pass  # nothing is ever written here

    def free_bytes(self) -> int | None:
        return None


def _body(resp: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The body's bytes as they come; a body of known length is asked for whole (one read
    in C: a third less CPU than pieces), and a short one raises as a cut."""
    length = resp.headers.get("Content-Length", "")
    if not length.isdigit():
        yield from resp.stream(PIECE, decode_content=False)
        return
    left = int(length)
    while left > 0:
        piece = resp.read(left, decode_content=False)
        if not piece:
            raise urllib3.exceptions.IncompleteRead(int(length) - left, left)
        left -= len(piece)
        yield piece


def _drop(resp: urllib3.BaseHTTPResponse) -> None:
    """Close the answer's connection and give its place back to the pool (the pool blocks
    when full: a place never given back would hang the requests after it)."""
    resp.close()
    resp.release_conn()


def _total(resp: urllib3.BaseHTTPResponse) -> int | None:
    """The whole value's size: from Content-Range (206, 416) or Content-Length (200)."""
    if resp.status in (206, 416):
        total = resp.headers.get("Content-Range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = resp.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def _starts_at(resp: urllib3.BaseHTTPResponse, offset: int) -> bool:
    """A 206 answer holds the value from `offset` on."""
    span = resp.headers.get("Content-Range", "").removeprefix("bytes ").partition("-")[0]
    return span.isdigit() and int(span) == offset

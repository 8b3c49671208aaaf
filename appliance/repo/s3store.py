"""A repository in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Garage...): `S3Store`.

`s3://BUCKET/PREFIX` names it. The keys are those of a folder repository under PREFIX/
(repo.json, chunks/ab/cd/HASH, images/NAME/...), so a folder copied into the bucket with any
tool (rclone, `aws s3 sync`) is a repository there, and back. The endpoint, region and
credentials come from where every AWS tool reads them (AWS_ENDPOINT_URL, AWS_REGION,
AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws/config...): boto3 reads them itself. An endpoint
that is not AWS's is addressed path-style (http://host/BUCKET/KEY), which every
S3-compatible server accepts.

What the Store contract asks, in S3 terms: a PUT is atomic (a reader sees the old value or
the new one, never half), and durable when it returns, so `durable`, `sync` and
`discard_partial_writes` have nothing to do; `append` reads, adds and writes back (only the
image log uses it); a folder is a key prefix. Every failure becomes an OSError with an errno
and a short cause that names the endpoint (tests/unit/repo/test_store.py runs the contract
on a real S3 server). The lock is an object made with a conditional PUT (repo/s3lock.py).
"""

from __future__ import annotations

import builtins
import errno
import mmap
import os
import re
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import boto3
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from appliance.errors import RepositoryError
from appliance.repo.store import check_key

#: connections kept open to the endpoint: the engine's worker threads, the restore's
#: readers and the precheck's threads all fetch at once
POOL = 32
#: a chunk fetch that breaks off while its body streams is tried again this many times
READ_TRIES = 3
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MISSING = {"NoSuchKey", "404", "NotFound"}
REFUSED_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"}
DENIED = {"AccessDenied", "403", "AllAccessDisabled", "AccountProblem"}
#: a conditional PUT's answers: the key is there already / the server does not know the header
TAKEN = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
UNKNOWN_HEADER = {"NotImplemented", "501", "InvalidArgument", "InvalidRequest"}
T = TypeVar("T")


def parse_location(text: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://BUCKET/PREFIX`; a sentence for anything else."""
    rest = text[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if not BUCKET_RE.match(bucket):
        raise RepositoryError(
            f"{text} does not name an S3 bucket; write s3://BUCKET/FOLDER (a bucket name has "
            "3 to 63 lower-case letters, digits, dots and dashes)."
        )
    if prefix:
        try:
            check_key(prefix)
        except ValueError:
            raise RepositoryError(
                f"{text} names a folder in its bucket that cannot be used ({prefix!r})."
            ) from None
    return bucket, prefix


def _is_aws(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")


def make_client(path_style: bool | None = None) -> Any:
    """An S3 client configured the way every AWS tool is (environment, ~/.aws/config), with
    a connection pool for the engine's threads. `path_style` None: path-style for an
    endpoint that is not AWS's."""
    session = boto3.session.Session()
    options: dict[str, Any] = {
        "max_pool_connections": POOL,
        "retries": {"mode": "standard", "max_attempts": 5},
        "connect_timeout": 5,
        "read_timeout": 60,
    }
    client = session.client("s3", config=Config(**options))
    if path_style is None:
        path_style = not _is_aws(client.meta.endpoint_url)
    if not path_style:
        return client
    # S3-compatible servers: path-style addresses, and checksums only where S3 requires
    # them (servers that predate the newer checksum headers refuse them)
    options["s3"] = {"addressing_style": "path"}
    options["request_checksum_calculation"] = "when_required"
    options["response_checksum_validation"] = "when_required"
    return session.client("s3", config=Config(**options))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store:
    """The keys of one repository, kept under `prefix/` in an S3 bucket."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client if client is not None else make_client()
        self.endpoint = str(self.client.meta.endpoint_url)
        self._base = f"{self.prefix}/" if self.prefix else ""
        self._append_lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def describe(self) -> str:
        """The bucket and its endpoint, for sentences."""
        return f"the bucket {self.bucket} at {self.endpoint}"

    # -- opening ---------------------------------------------------------------------------
    def check(self) -> None:
        """One request that tells whether the bucket can be reached and read with these
        credentials; a sentence (RepositoryError) naming the bucket and the cause if not."""
        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._base, MaxKeys=1)
        except (NoCredentialsError, PartialCredentialsError):
            raise RepositoryError(
                f"There are no credentials for {self.describe()}; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)."
            ) from None
        except ClientError as exc:
            code = _code(exc)
            if code == "NoSuchBucket":
                raise RepositoryError(
                    f"The S3 bucket {self.bucket} does not exist at {self.endpoint}; create it "
                    "or name another bucket."
                ) from None
            if code == "404":  # no S3 error in the answer: maybe no S3 server there at all
                raise RepositoryError(
                    f"{self.endpoint} answered 'not found' for the bucket {self.bucket} and is "
                    "perhaps no S3 server; check AWS_ENDPOINT_URL and the bucket's name."
                ) from None
            if code in REFUSED_CREDENTIALS:
                raise RepositoryError(
                    f"The S3 endpoint {self.endpoint} refused the credentials for the bucket "
                    f"{self.bucket} ({code}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
                ) from None
            if code in DENIED:
                raise RepositoryError(
                    f"Access to {self.describe()} is denied to these credentials."
                ) from None
            raise RepositoryError(
                f"The S3 endpoint {self.endpoint} refused to list the bucket {self.bucket}: "
                f"{exc.response.get('Error', {}).get('Message') or code}."
            ) from None
        except (BotoCoreError, urllib3.exceptions.HTTPError) as exc:
            raise RepositoryError(
                f"The S3 endpoint {self.endpoint} of the bucket {self.bucket} cannot be "
                f"reached ({_reason(exc)}); check AWS_ENDPOINT_URL and the network."
            ) from None

    # -- the Store contract ----------------------------------------------------------------
    def key(self, key: str) -> str:
        """The object's key in the bucket."""
        return self._base + check_key(key)

    def get(self, key: str) -> bytes:
        return self._fetch(self.key(key), None)

    def read_into(self, key: str, buffer: bytearray | mmap.mmap) -> int:
        data = self._fetch(self.key(key), len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def head(self, key: str, length: int) -> tuple[bytes, int]:
        name = self.key(key)
        try:
            reply = self._call(
                lambda: self.client.get_object(
                    Bucket=self.bucket, Key=name, Range=f"bytes=0-{max(length, 1) - 1}"
                )
            )
        except OSError as exc:
            if exc.errno != errno.ERANGE:  # an empty object has no byte 0
                raise
            return b"", self.size(key)
        data = self._body(reply)
        total = str(reply.get("ContentRange", "")).rpartition("/")[2]
        return data[:length], int(total) if total.isdigit() else len(data)

    def size(self, key: str) -> int:
        name = self.key(key)
        reply = self._call(lambda: self.client.head_object(Bucket=self.bucket, Key=name))
        return int(reply["ContentLength"])

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except FileNotFoundError:
            return False
        return True

    def put(self, key: str, data: bytes | memoryview, *, durable: bool) -> None:
        # a PUT is atomic and durable when S3 answers it: `durable` asks nothing more
        name = self.key(key)
        body = bytes(data)  # botocore sends bytes (a memoryview: a sealed chunk's buffer)
        self._call(lambda: self.client.put_object(Bucket=self.bucket, Key=name, Body=body))

    def put_new(self, key: str, data: bytes) -> bool | None:
        """Store `data` only if no value has the key (a PUT with If-None-Match: *): True
        when stored, False when a value is there, None when the server does not take the
        condition (nothing stored)."""
        name = self.key(key)

        def request() -> bool | None:
            try:
                self.client.put_object(Bucket=self.bucket, Key=name, Body=data, IfNoneMatch="*")
            except ClientError as exc:
                if _code(exc) in TAKEN:
                    return False
                if _code(exc) in UNKNOWN_HEADER:
                    return None
                raise
            return True

        return self._call(request)

    def append(self, key: str, data: bytes) -> None:
        """Read, add, write back (only the image log appends, one job at a time). Like a
        folder's log file, no folder is made: nothing is written into an image that has no
        other key (a log line of an image deleted meanwhile is dropped)."""
        parent = key.rpartition("/")[0]
        with self._append_lock:
            try:
                old = self.get(key)
            except FileNotFoundError:
                if parent and not self._any(f"{parent}/"):
                    raise FileNotFoundError(
                        errno.ENOENT, f"no folder {parent} in {self.describe()}"
                    ) from None
                old = b""
            self.put(key, old + data, durable=True)

    def list(self, prefix: str) -> Iterator[str]:
        start = len(self._base)
        for page in self._pages(prefix, delimiter=False):
            for item in page.get("Contents", []):
                key = str(item["Key"])[start:]
                if not _hidden(key):
                    yield key

    def folders(self, prefix: str) -> builtins.list[str]:
        start = len(self._base) + len(prefix)
        out: builtins.list[str] = []
        for page in self._pages(prefix, delimiter=True):
            for item in page.get("CommonPrefixes", []):
                name = str(item["Prefix"])[start:].rstrip("/")
                if name and not name.startswith("."):
                    out.append(name)
        return out

    def delete(self, key: str) -> None:
        name = self.key(key)
        self._call(lambda: self.client.delete_object(Bucket=self.bucket, Key=name))

    def delete_folder(self, prefix: str) -> None:
        """An image's manifest goes first, on its own: a delete stopped half-way leaves no
        image that can be restored or that gc counts, only keys that `images` shows as an
        image with no manifest and that deleting it again removes."""
        keys = [self._base + key for key in self.list(prefix)]
        first = [k for k in keys if k.endswith("/manifest.json")]
        for key in first:
            self._call(partial(self.client.delete_object, Bucket=self.bucket, Key=key))
        rest = [k for k in keys if k not in first]
        for start in range(0, len(rest), 1000):  # DeleteObjects takes 1000 keys at most
            batch = [{"Key": k} for k in rest[start : start + 1000]]
            reply = self._call(
                partial(
                    self.client.delete_objects,
                    Bucket=self.bucket,
                    Delete={"Objects": batch, "Quiet": True},
                )
            )
            errors = reply.get("Errors") or []
            if errors:
                bad = errors[0]
                raise OSError(
                    errno.EACCES if bad.get("Code") == "AccessDenied" else errno.EREMOTEIO,
                    f"{self.describe()} did not delete {bad.get('Key')}: "
                    f"{bad.get('Message') or bad.get('Code')}",
                )

    def discard_partial_writes(self, prefix: str) -> int:
        return 0  # a PUT that stopped left nothing: S3 stores whole objects or none

    def sync(self) -> None:
        """Nothing: every PUT was durable when S3 answered it."""

    def free_bytes(self) -> int | None:
        return None  # a bucket has no free space to ask about

    # -- requests --------------------------------------------------------------------------
    def _any(self, prefix: str) -> bool:
        reply = self._call(
            lambda: self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=self._base + prefix, MaxKeys=1
            )
        )
        return bool(reply.get("KeyCount") or reply.get("Contents"))

    def _pages(self, prefix: str, *, delimiter: bool) -> Iterator[dict[str, Any]]:
        if prefix:
            check_key(prefix.rstrip("/"))
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._base + prefix}
        if delimiter:
            args["Delimiter"] = "/"
        pages = self.client.get_paginator("list_objects_v2").paginate(**args)
        iterator = iter(pages)
        while True:
            try:
                page: dict[str, Any] = self._call(lambda: next(iterator))
            except StopIteration:
                return
            yield page

    def _fetch(self, name: str, limit: int | None) -> bytes:
        """The object's bytes (at most `limit`), fetched again if its body breaks off."""
        for attempt in range(READ_TRIES):
            reply = self._call(lambda: self.client.get_object(Bucket=self.bucket, Key=name))
            try:
                return self._body(reply, limit)
            except OSError:
                if attempt == READ_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _body(self, reply: dict[str, Any], limit: int | None = None) -> bytes:
        body = reply["Body"]
        try:
            data = body.read() if limit is None else body.read(limit)
            return bytes(data)
        except (BotoCoreError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise OSError(  # a connection's failure (repo/netfailure.py), not the data's
                errno.ECONNRESET,
                f"the transfer from {self.describe()} broke off ({_reason(exc)})",
            ) from exc
        finally:
            body.close()

    def _call(self, request: Callable[[], T]) -> T:
        try:
            return request()
        except ClientError as exc:
            self._fail(exc)
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise PermissionError(
                errno.EACCES, f"there are no credentials for {self.describe()}"
            ) from exc
        except (BotoConnectionError, urllib3.exceptions.HTTPError) as exc:
            raise OSError(
                errno.EHOSTUNREACH,
                f"the S3 endpoint {self.endpoint} cannot be reached ({_reason(exc)})",
            ) from exc
        except BotoCoreError as exc:
            raise OSError(errno.EREMOTEIO, f"{self.describe()}: {_reason(exc)}") from exc

    def _fail(self, exc: ClientError) -> NoReturn:
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in MISSING:
            raise FileNotFoundError(errno.ENOENT, f"no such key in {self.describe()}") from exc
        if code == "NoSuchBucket":
            raise OSError(errno.ENXIO, f"{self.describe()} does not exist") from exc
        if code in REFUSED_CREDENTIALS:
            raise PermissionError(
                errno.EACCES, f"{self.endpoint} refused the credentials ({code})"
            ) from exc
        if code in DENIED:
            raise PermissionError(errno.EACCES, f"access to {self.describe()} is denied") from exc
        if code == "InvalidRange":
            raise OSError(errno.ERANGE, "the object is empty") from exc
        if code in ("QuotaExceeded", "EntityTooLarge") or status == 507:
            raise OSError(errno.EDQUOT, f"{self.describe()} is over its quota") from exc
        message = exc.response.get("Error", {}).get("Message") or code or f"HTTP {status}"
        raise OSError(errno.EREMOTEIO, f"{self.describe()} answered {message}") from exc


def _hidden(key: str) -> bool:
    """A key with a part that starts with '.': what a folder's copy of a stopped write left
    (".NAME.PID.tmp", ".deleting-NAME/"), hidden as LocalStore hides it."""
    return any(part.startswith(".") for part in key.split("/"))


ERRNO_RE = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def _reason(exc: BaseException) -> str:
    """A short cause from a botocore or urllib3 error: the system's words when there are
    some ("Connection refused"), else the error's first line."""
    text = str(exc).strip() or type(exc).__name__
    system = ERRNO_RE.search(f"{text} {getattr(exc, 'kwargs', {}).get('error', '')}")
    if system:
        return system.group(1).strip().rstrip(".").lower()
    return text.split("\n")[0].rstrip(".")[:200]


_OPEN: dict[tuple[str, tuple[tuple[str, str], ...]], S3Store] = {}
_OPEN_LOCK = threading.Lock()


def open_s3(location: str) -> S3Store:
    """The store at `s3://BUCKET/PREFIX`, checked reachable with these credentials (a sentence
    if not). A job opens its location several times: one store (one connection pool) is
    kept per location and AWS settings."""
    settings = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    with _OPEN_LOCK:
        store = _OPEN.get((location, settings))
        if store is not None:
            return store
        bucket, prefix = parse_location(location)
        try:
            store = S3Store(bucket, prefix)
        except (BotoCoreError, ValueError) as exc:  # an unknown profile, a bad endpoint URL
            raise RepositoryError(
                f"The S3 settings for the bucket {bucket} cannot be used: {_reason(exc)}."
            ) from None
        store.check()
        _OPEN[(location, settings)] = store
        return store

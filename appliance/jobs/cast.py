"""cast receive: restore the image a `cast send` multicasts (udp-receiver) onto one disk.

udp-receiver writes the stream (appliance.io.caststream) to its stdout; this job reads the
head (the image's name, the sender's web address, the repository files), loads and checks
the image from those files, plans the restore exactly as `restore` does (the fit onto the
target, the safety guards, the write plan: marker first, table valid last) and runs it with
an image source that takes each chunk from the stream as it arrives. Every chunk is checked
against its name as it is decoded; one the stream lost or damaged is fetched from the
sender's repository over HTTP instead (HttpStore). The disk is marked complete only when
every chunk was proven. The sender side is appliance.jobs.castsend.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import json
import mmap
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, Any

from appliance.disk.model import Disk
from appliance.disk.probe import probe_disk
from appliance.errors import (
    CorruptData,
    DeviceError,
    ImageError,
    NetworkError,
    RepositoryError,
    UsageError,
)
from appliance.io.caststream import ChunkStream, RecordReader
from appliance.io.source import RepositorySource
from appliance.jobs.castlate import (
    DONE,
    STREAMING,
    LatePlan,
    LateWatch,
    joined_session,
    late_words,
    read_announcement,
)
from appliance.jobs.fitting import recheck_target
from appliance.jobs.precheck import check_table
from appliance.jobs.restore import RestorePlan, fit_for, restore_steps
from appliance.jobs.writeplan import execute
from appliance.plan.safety import check_target
from appliance.progress import Phase, Progress
from appliance.repo.image import LoadedImage, load_image
from appliance.repo.repository import Repository
from appliance.repo.store import ReadOnlyWrites
from appliance.tools import run, which

PORTBASE = 9000  # udpcast's default; sender and receivers must agree
WAIT = 600  # seconds a receiver waits for a sender by default
LEAVE = 5  # seconds udp-receiver gets to leave the session before it is killed


def check_interface(name: str) -> None:
    """A sentence when the machine has no network interface of that name."""
    if not name or "/" in name or not os.path.isdir(f"/sys/class/net/{name}"):
        known = ", ".join(sorted(os.listdir("/sys/class/net"))) or "none"
        raise UsageError(f"There is no network interface {name} on this machine (it has {known}).")


def default_interface() -> str | None:
    """The interface of the default route, else the first one that is up (not loopback);
    None leaves udpcast its own default (eth0)."""
    proc = run(["ip", "-j", "route", "show", "default"], check=False)
    try:
        routes = json.loads(proc.stdout or "[]")
    except ValueError:
        routes = []
    for route in routes:
        if isinstance(route.get("dev"), str):
            return str(route["dev"])
    for name in sorted(os.listdir("/sys/class/net")):
        with contextlib.suppress(OSError):
            state = Path(f"/sys/class/net/{name}/operstate").read_text().strip()
            if name != "lo" and state == "up":
                return name
    return None


class CastStore(ReadOnlyWrites):
    """The repository files the stream's head carried (read-only); what it lacks comes from
    the sender's repository over HTTP when there is one."""

    refusal = "the multicast stream is read-only"

    def __init__(self, files: dict[str, bytes], where: str) -> None:
        self.files = files
        self._where = where

    @property
    def where(self) -> str:
        return self._where

    def get(self, key: str) -> bytes:
        if key not in self.files:
            raise FileNotFoundError(errno.ENOENT, "not in the multicast stream", key)
        return self.files[key]

    def read_into(self, key: str, buffer: bytearray | mmap.mmap) -> int:
        data = self.get(key)[: len(buffer)]
        buffer[: len(data)] = data
        return len(data)

    def head(self, key: str, length: int) -> tuple[bytes, int]:
        data = self.get(key)
        return data[:length], len(data)

    def size(self, key: str) -> int:
        return len(self.get(key))

    def exists(self, key: str) -> bool:
        return key in self.files

    def list(self, prefix: str) -> Iterator[str]:
        return iter(sorted(k for k in self.files if k.startswith(prefix)))

    def folders(self, prefix: str) -> builtins.list[str]:
        return sorted(
            {k[len(prefix) :].split("/")[0] for k in self.files if k.startswith(prefix)} - {""}
        )

    def sync(self) -> None:
        return None

    def free_bytes(self) -> int | None:
        return None


@dataclass
class CastCounts:
    streamed: int = 0  # chunks taken from the stream and proven
    fetched: int = 0  # chunks fetched over HTTP (missed or damaged in the stream)
    damaged: int = 0  # chunks the stream carried with wrong content


class CastSource(RepositorySource):
    """The image's windows from the stream; a chunk the stream lost or damaged from the
    sender's repository over HTTP. Fetches one at a time, in the stream's order."""

    def __init__(self, loaded: LoadedImage, stream: ChunkStream, fallback: Fallback) -> None:
        base = RepositorySource.from_image(loaded)
        super().__init__(base.repo, base.image, base.regions, base.indexes)
        self.stream = stream
        self.fallback = fallback
        self.counts = CastCounts()
        self._lock = threading.Lock()

    @property
    def fetchers(self) -> int:
        return 1

    def fetch(self, name: str) -> bytes:
        blob = self.stream.take(name)
        return blob if blob is not None else self._fetch_http(name)

    def _fetch_http(self, name: str) -> bytes:
        with self._lock:
            self.counts.fetched += 1
        return self.fallback.chunk(name)

    def decode(self, region: int, name: str, length: int, blob: bytes | memoryview) -> bytes:
        try:
            data = super().decode(region, name, length, blob)
        except CorruptData:
            self._count_damaged()
            data = super().decode(region, name, length, self._fetch_http(name))
        else:
            self._count_streamed()
        return data

    def decode_into(
        self, region: int, name: str, length: int, blob: bytes | memoryview, out: memoryview
    ) -> None:
        try:
            super().decode_into(region, name, length, blob, out)
        except CorruptData:
            self._count_damaged()
            super().decode_into(region, name, length, self._fetch_http(name), out)
        else:
            self._count_streamed()

    def _count_damaged(self) -> None:
        with self._lock:
            self.counts.damaged += 1

    def _count_streamed(self) -> None:
        with self._lock:
            self.counts.streamed += 1


class Fallback:
    """The sender's repository over HTTP, opened on first use (the stream may need none)."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self._repo: Repository | None = None
        self._lock = threading.Lock()

    @property
    def repo(self) -> Repository:
        if self.url is None:
            raise CorruptData(
                "The multicast stream lost data and names no web address to fetch it from; "
                "give the sender's with --from http://SENDER:PORT/."
            )
        with self._lock:
            if self._repo is None:
                try:
                    self._repo = Repository.open(self.url)
                except RepositoryError as exc:  # mid-restore: the network's failure, exit 12
                    if isinstance(exc.__cause__, NetworkError):
                        raise exc.__cause__ from None
                    raise
            return self._repo

    def chunk(self, name: str) -> bytes:
        return self.repo.fetch_chunk(name)  # as stored: CastSource.decode opens it


class CastPlan(RestorePlan):
    """A restore plan whose windows come from the stream."""

    stream: ChunkStream
    fallback: Fallback

    @cached_property
    def source(self) -> CastSource:
        return CastSource(self.image, self.stream, self.fallback)


@dataclass
class CastResult:
    image: str
    target: str
    seconds: float
    counts: CastCounts
    skipped: int  # stream bytes passed over (damaged record headers)
    complete: bool  # the stream's end record arrived
    late_from: str | None = None  # joined after the stream began: all of it from this URL

    def line(self) -> str:
        c = self.counts
        if self.late_from is not None:
            return (
                f"Received image {self.image} onto {self.target} in {self.seconds:.1f} s: "
                f"this PC joined after the stream began, so all {c.fetched} chunks were "
                f"fetched over HTTP from {self.late_from}; every chunk was checked against "
                "its name."
            )
        return (
            f"Received image {self.image} onto {self.target} in {self.seconds:.1f} s: "
            f"{c.streamed} chunks from the stream, {c.fetched} fetched over HTTP "
            f"({c.damaged} damaged in the stream); every chunk was checked against its name."
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "target": self.target,
            "ok": True,
            "seconds": round(self.seconds, 3),
            "streamed": self.counts.streamed,
            "fetched": self.counts.fetched,
            "damaged": self.counts.damaged,
            "skipped_bytes": self.skipped,
            "stream_complete": self.complete,
            "late": self.late_from is not None,
        }


def receiver_argv(interface: str | None, portbase: int, wait: int) -> list[str]:
    argv = [which("udp-receiver"), "--nokbd", "--portbase", str(portbase)]
    argv += ["--start-timeout", str(wait), "--receive-timeout", "60"]
    return argv + (["--interface", interface] if interface else [])


@contextlib.contextmanager
def udp_receiver(argv: list[str]) -> Iterator[tuple[subprocess.Popen[bytes], IO[bytes]]]:
    """udp-receiver running, its stdout the stream; stopped by its PID at the end.

    A receiver that stops reading before the end (it refused the image, its disk failed, a
    stop) leaves the session: udp-receiver gets EPIPE on its next write and exits, which
    sends the sender a disconnect. Killed instead, it would hold up the sender and every
    other PC of the room until udp-sender drops it (about 200 s of unanswered acks)."""
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            restore_signals=False,  # SIGPIPE stays ignored: a closed stream is an EPIPE
        )
        try:
            yield proc, errors
        finally:
            if proc.poll() is None and proc.stdout is not None and joined_session(errors.fileno()):
                proc.stdout.close()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=LEAVE)
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()


def _tail(errors: IO[bytes]) -> str:
    errors.seek(0)
    text = errors.read().decode("utf-8", "replace").replace("\r", "\n")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def load_streamed(files: dict[str, bytes], image: str, fallback: Fallback) -> LoadedImage:
    """The image from the files the stream carried; from the sender's web server when those
    are damaged or missing."""
    where = fallback.url or "the multicast stream"
    try:
        return load_image(Repository.in_store(CastStore(files, where)), image)
    except (RepositoryError, ImageError, CorruptData):
        if fallback.url is None:
            raise
    return load_image(fallback.repo, image)


def receive(
    target: str,
    *,
    interface: str | None = None,
    fallback_url: str | None = None,
    portbase: int = PORTBASE,
    wait: int = WAIT,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    say: Callable[[str], None] | None = None,
) -> CastResult:
    """Receive one multicast image onto `target` (see the module's doc); `say` gets a line
    for people when this PC joined too late for the stream."""
    progress = progress or Progress()
    interface = interface or default_interface()
    if interface is not None:
        check_interface(interface)
    argv = receiver_argv(interface, portbase, wait)
    disk = probe_disk(target)
    check_target(disk)

    def run(plan: RestorePlan) -> None:
        _restore(plan, progress, cancel, workers)

    started = time.monotonic()
    progress.set_phase(Phase.CHECK, f"waiting for a multicast sender (up to {wait} s)")
    with udp_receiver(argv) as (proc, errors):
        assert proc.stdout is not None
        stream = ChunkStream(RecordReader(proc.stdout))
        watch = LateWatch(fallback_url, proc, errors.fileno()) if fallback_url else None
        with watch or contextlib.nullcontext():
            head, files = stream.head()
        if head is None:
            proc.wait(timeout=30)
            late = watch.late if watch is not None else None
            if late is None and fallback_url and not files:  # came after udp-sender's wait
                found = read_announcement(fallback_url)
                late = found if found and found.get("state") in (STREAMING, DONE) else None
            if late is not None and fallback_url:
                if say is not None:
                    say(late_words(fallback_url))
                return _receive_late(disk, fallback_url, late["image"], started, progress, run)
            if not files and proc.returncode != 0:
                said = _tail(errors)
                raise DeviceError(
                    f"No multicast sender was heard within {wait} seconds"
                    f"{f' on {interface}' if interface else ''} (udp-receiver: "
                    f"{said or 'no answer'}); nothing was written to {target}."
                )
            raise CorruptData(
                f"The start of the multicast stream was damaged; nothing was written to {target}."
            )
        fallback = Fallback(fallback_url or head["http"])
        loaded = load_streamed(files, head["image"], fallback)
        check_target(disk, sector=loaded.manifest.disk.logical_sector)
        plan = CastPlan(loaded, disk, fit_for(loaded, disk, None))
        plan.stream, plan.fallback = stream, fallback
        run(plan)
        stream.drain()
    progress.set_phase(Phase.DONE, f"{loaded.manifest.name} received onto {target}")
    return CastResult(
        loaded.manifest.name,
        target,
        time.monotonic() - started,
        plan.source.counts,
        stream.reader.skipped,
        stream.reader.complete,
    )


def _restore(
    plan: RestorePlan,
    progress: Progress,
    cancel: threading.Event | None,
    workers: int | None,
) -> None:
    """The restore's own checks and steps on the plan's target (streamed or late)."""
    sector = plan.image.manifest.disk.logical_sector
    check_table(plan)
    now = recheck_target(plan.target)
    check_target(now, sector=sector)
    progress.total = plan.total
    table = plan.image.manifest.table
    execute(
        restore_steps(plan, now),
        now,
        progress=progress,
        cancel=cancel,
        workers=workers,
        table=table.type if table else None,
    )


def _receive_late(
    disk: Disk,
    url: str,
    image: str,
    started: float,
    progress: Progress,
    run: Callable[[RestorePlan], None],
) -> CastResult:
    """Every chunk over HTTP from the sender's web server (appliance.jobs.castlate)."""
    progress.set_phase(Phase.CHECK, late_words(url))
    loaded = load_image(Fallback(url).repo, image)
    check_target(disk, sector=loaded.manifest.disk.logical_sector)
    plan = LatePlan(loaded, disk, fit_for(loaded, disk, None))
    run(plan)
    progress.set_phase(Phase.DONE, f"{image} received onto {disk.node} over HTTP")
    counts = CastCounts(fetched=plan.source.fetched)
    return CastResult(image, disk.node, time.monotonic() - started, counts, 0, False, url)

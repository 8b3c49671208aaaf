"""cast send: multicast one image of a repository to a room of PCs with udp-sender.

The job checks the image first (manifest, indexes, every chunk stored whole), then pipes
the stream (appliance.io.caststream: the repository files, then every chunk in restore
order) into udp-sender, which waits for the receivers and sends at the speed of the slowest.
Meanwhile it serves the repository folder read-only over HTTP on the interface's address
(a small threaded http.server) so that a receiver can fetch a chunk the stream lost or
damaged; it keeps serving until no request came for `linger` seconds after the stream
ended. udpcast writes no byte of its own into the stream: what the receivers read is
exactly what this job wrote. The receiving side is appliance.jobs.cast.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

from appliance.errors import Cancelled, DeviceError, ToolFailed, UsageError
from appliance.io.caststream import CHUNK, FILE, end_record, head_record, write_record
from appliance.io.source import RepositorySource
from appliance.jobs.cast import PORTBASE, check_interface, default_interface
from appliance.jobs.castlate import DONE, RoomState
from appliance.jobs.castserve import serve_folder, serve_store
from appliance.jobs.precheck import CHECK_THREADS
from appliance.progress import Phase, Progress
from appliance.repo.image import LoadedImage, load_image
from appliance.repo.repository import Repository
from appliance.repo.sealing import KEY_FILE
from appliance.repo.signing import MAC_FILE
from appliance.tools import run, which

LINGER = 60  # seconds the web server stays after the stream without a request


def interface_address(interface: str) -> str | None:
    """The interface's first IPv4 address, None when it has none."""
    proc = run(["ip", "-j", "-4", "addr", "show", "dev", interface], check=False)
    try:
        entries = json.loads(proc.stdout or "[]")
    except ValueError:
        return None
    for entry in entries:
        for info in entry.get("addr_info", []):
            local = info.get("local")
            if info.get("family") == "inet" and isinstance(local, str):
                return str(ipaddress.IPv4Address(local))
    return None


def stream_files(loaded: LoadedImage) -> Iterator[tuple[str, bytes]]:
    """The repository files a receiver loads the image from: repo.json, the manifest and
    every index (checked by their hashes on the receiver); for a v1 repository with a key,
    its key file and the manifest's MAC too (the receiver checks it with the passphrase)."""
    repo, name = loaded.repo, loaded.manifest.name
    yield "repo.json", repo.read("repo.json")
    signed = [KEY_FILE, repo.image_key(name, MAC_FILE)] if repo.signer is not None else []
    for key in [*signed, repo.image_key(name, "manifest.json")]:
        yield key, repo.read(key)
    for region in loaded.manifest.regions:
        key = repo.image_key(name, region.index)
        yield key, repo.read(key)


def stream_chunks(loaded: LoadedImage) -> Iterator[str]:
    """Every chunk in restore order: each window of each region, as the image lists them."""
    source = RepositorySource.from_image(loaded)
    for number, region in enumerate(source.regions):
        for win in region.windows(number):
            name = source.chunk(number, win.number)
            if name is not None:
                yield name


def check_chunks(loaded: LoadedImage) -> None:
    """Every chunk is stored whole before the room is kept waiting."""
    from concurrent.futures import ThreadPoolExecutor

    from appliance.errors import CorruptData

    names = list(dict.fromkeys(stream_chunks(loaded)))
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        missing = [
            n for n, ok in zip(names, pool.map(loaded.repo.has_chunk, names), strict=True) if not ok
        ]
    if missing:
        raise CorruptData(
            f"Image {loaded.manifest.name} is damaged: {len(missing)} of its chunks are "
            "missing or truncated; nothing was sent."
        )


@dataclass
class SendResult:
    image: str
    receivers: int
    bytes: int
    seconds: float
    url: str | None
    expected: int = 0  # --receivers
    wait: int = 0
    left: int = 0  # joined, then left the stream before its end (refused, failed, stopped)

    def line(self) -> str:
        who = f"{self.receivers} receiver{'s' if self.receivers != 1 else ''}"
        if self.receivers < self.expected:
            who = (
                f"{self.receivers} of {self.expected} receivers ({self.expected - self.receivers}"
                f" did not come within {self.wait} s)"
            )
        if self.left:
            where = "that PC's screen" if self.left == 1 else "those PCs' screens"
            who += (
                f"; {self.left} of them left before the end and did not get it (the reason is"
                f" on {where})"
            )
        return f"Sent image {self.image} to {who}: {self.bytes} bytes in {self.seconds:.1f} s."

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "receivers": self.receivers,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "http": self.url,
            "expected": self.expected,
            "left": self.left,
        }


def fetched_ahead(
    names: Iterator[str], fetch: Callable[[str], bytes], ahead: int
) -> Iterator[tuple[str, bytes]]:
    """Each name with its chunk, in order; from a server (a bucket, a web server) `ahead`
    chunks are asked for at once, never more (one at a time leaves the link idle)."""
    if ahead <= 1:
        for name in names:
            yield name, fetch(name)
        return
    pool = ThreadPoolExecutor(ahead, thread_name_prefix="cast-fetch")
    waiting: deque[tuple[str, Future[bytes]]] = deque()
    try:
        for name in names:
            waiting.append((name, pool.submit(fetch, name)))
            if len(waiting) > ahead:
                first, future = waiting.popleft()
                yield first, future.result()
        while waiting:
            first, future = waiting.popleft()
            yield first, future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def sender_argv(interface: str | None, portbase: int, receivers: int, wait: int) -> list[str]:
    argv = [which("udp-sender"), "--nokbd", "--no-progress", "--portbase", str(portbase)]
    argv += ["--min-receivers", str(receivers), "--max-wait", str(wait)]
    argv += ["--start-timeout", str(wait)]
    return argv + (["--interface", interface] if interface else [])


def _write_stream(
    out: IO[bytes],
    loaded: LoadedImage,
    url: str | None,
    cancel: threading.Event,
    progress: Progress | None = None,
) -> int:
    """The whole stream into `out`; how many bytes."""
    total = 0

    def put(kind: bytes, key: str, body: bytes) -> None:
        nonlocal total
        if cancel.is_set():
            raise Cancelled("Stopped by the user.")
        write_record(out, kind, key, body)
        total += len(body) + len(key) + 15

    head = head_record(loaded.manifest.name, url)
    out.write(head)
    total += len(head)
    for key, data in stream_files(loaded):
        put(FILE, key, data)
    count = 0
    repo = loaded.repo
    for name, blob in fetched_ahead(stream_chunks(loaded), repo.get_chunk, repo.read_parallelism):
        put(CHUNK, name, blob)
        count += 1
        if progress is not None:
            progress.add(len(blob))
    end = end_record(count)
    out.write(end)
    return total + len(end)


def _started(words: str, progress: Progress, say: Callable[[str], None] | None) -> None:
    progress.set_phase(Phase.RESTORE, words)
    if say is not None:
        say(words)


def _listen(errors: IO[bytes], room: RoomState) -> None:
    """udp-sender's stderr, line by line, into the room's state (as it comes: the room
    learns when the stream starts, and with how many receivers)."""
    for raw in errors:
        for line in raw.decode("utf-8", "replace").replace("\r", "\n").splitlines():
            if line.strip():
                room.feed(line.strip())


def send(
    repo_path: str,
    image: str,
    *,
    receivers: int = 1,
    wait: int = 600,
    interface: str | None = None,
    http_port: int = 8090,
    portbase: int = PORTBASE,
    linger: float = LINGER,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    say: Callable[[str], None] | None = None,
) -> SendResult:
    """Multicast `image` to the receivers (see the module's doc); `say` gets a line for
    people when the stream starts (with how many receivers)."""
    progress = progress or Progress()
    cancel = cancel or threading.Event()
    interface = interface or default_interface()
    if interface is not None:
        check_interface(interface)
    argv = sender_argv(interface, portbase, receivers, wait)
    repo = Repository.open(repo_path)
    if repo.encrypted:  # the stream would carry what the key protects, in clear
        raise UsageError(
            f"The repository at {repo.where} is encrypted, and a multicast stream is not; "
            "restore from the repository on each PC instead."
        )
    loaded = load_image(repo, image)
    progress.set_phase(Phase.CHECK, f"checking that image {image} is whole")
    check_chunks(loaded)
    progress.total = sum(repo.chunk_size(name) for name in stream_chunks(loaded))
    address = interface_address(interface) if interface else None
    url = f"http://{address}:{http_port}/" if address and http_port else None
    room = RoomState(image, url, receivers, wait)
    room.on_start = lambda words: _started(words, progress, say)
    room.on_join = lambda words: progress.set_phase(Phase.RESTORE, words)
    serving = None
    if url and address:  # a folder here (a disk, a mounted share) as files, else key by key
        folder = repo.folder
        serving = (
            serve_folder(folder, address, http_port, room.announce)
            if folder is not None
            else serve_store(repo.store, address, http_port, room.announce)
        )
    progress.set_phase(Phase.RESTORE, f"waiting up to {wait} s for {receivers} receivers")
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        seen = stack.enter_context(serving) if serving is not None else None
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        assert proc.stdin is not None and proc.stderr is not None
        listen = threading.Thread(target=_listen, args=(proc.stderr, room), daemon=True)
        listen.start()
        try:
            sent = _write_stream(proc.stdin, loaded, url, cancel, progress)
            proc.stdin.close()
            proc.wait()
        except BrokenPipeError:
            sent = -1
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        listen.join(timeout=30)
        said = "\n".join(room.lines)
        came = room.joined
        if "Starting transfer" not in said:
            raise DeviceError(
                f"No receiver came within {wait} seconds"
                f"{f' on {interface}' if interface else ''}; nothing was sent."
            )
        if sent < 0 or proc.returncode != 0 or "Transfer complete" not in said:
            last = [line.strip() for line in said.splitlines() if line.strip()]
            raise ToolFailed(
                f"udp-sender stopped before the end of the stream "
                f"({last[-1] if last else f'exit code {proc.returncode}'})."
            )
        if room.left >= came:
            raise DeviceError(
                f"Every receiver that joined ({came}) left the stream before its end, so the "
                "image reached no PC; the reason is on each receiver's screen."
            )
        seconds = time.monotonic() - started
        room.state = DONE  # a PC that comes now restores over HTTP while the server lingers
        if seen is not None:
            seen[0] = max(seen[0], time.monotonic())
        while seen is not None and time.monotonic() - seen[0] < linger and not cancel.is_set():
            time.sleep(0.2)  # receivers may still fetch what the stream lost
    got = f"{came - room.left} of {came}" if room.left else f"{came}"
    progress.set_phase(Phase.DONE, f"{image} sent to {got} receivers")
    return SendResult(image, came, sent, seconds, url, receivers, wait, room.left)

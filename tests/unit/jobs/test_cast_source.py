"""The receiving side on real bytes: a tiny repository, the stream `cast send` writes for
it, read back by a receiver's image source; a damaged chunk is fetched from the sender's
repository instead (here the folder itself, the HTTP seam), and with nowhere to fetch it
from the receiver stops with a sentence."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest

from appliance.errors import CorruptData
from appliance.io.caststream import ChunkStream, RecordReader
from appliance.io.windows import WINDOW
from appliance.jobs.cast import CastSource, Fallback, load_streamed
from appliance.jobs.castsend import _write_stream, stream_chunks
from appliance.repo.chunk import Encoder, content_hash
from appliance.repo.image import LoadedImage, load_image
from appliance.repo.manifest import Index, Manifest, Region, index_hash
from appliance.repo.records import DiskRecord
from appliance.repo.repository import Repository

SIZE = 2 * WINDOW


def build(root: Path) -> tuple[Repository, bytes]:
    """Image "tiny": one region of two windows, each with 8 KiB of random data."""
    repo = Repository.open_or_create(root)
    data = bytearray(SIZE)
    used = [(0, 8192), (WINDOW, 8192)]
    for start, length in used:
        data[start : start + length] = os.urandom(length)
    chunks: list[str | None] = []
    for w in range(0, SIZE, WINDOW):
        piece = bytes(data[w : w + WINDOW])
        chunks.append(content_hash(piece))
        repo.put_chunk(content_hash(piece), Encoder().encode(piece))
    blob = Index("outside", WINDOW, SIZE, used, chunks).encode()
    folder = repo.image_dir("tiny")
    folder.mkdir(parents=True)
    (folder / "outside.idx").write_bytes(blob)
    region = Region(
        "outside",
        None,
        0,
        SIZE,
        "table",
        None,
        used_bytes=16384,
        index="outside.idx",
        index_hash=index_hash(blob),
    )
    disk = DiskRecord("loop9", "/dev/loop9", SIZE)
    manifest = Manifest("tiny", disk, None, [region], "now", "test", complete=True)
    (folder / "manifest.json").write_text(manifest.to_json())
    return repo, bytes(data)


class LocalFallback(Fallback):
    """The sender's repository, read from its folder instead of over HTTP."""

    def __init__(self, repo: Repository) -> None:
        super().__init__("http://sender.invalid/")
        self._local = repo

    def chunk(self, name: str) -> bytes:
        return self._local.get_chunk(name)


def receiver(stream: bytes, fallback: Fallback) -> CastSource:
    chunks = ChunkStream(RecordReader(io.BytesIO(stream)))
    head, files = chunks.head()
    assert head is not None and head["image"] == "tiny"
    loaded = load_streamed(files, head["image"], fallback)
    return CastSource(loaded, chunks, fallback)


def send(loaded: LoadedImage) -> bytearray:
    out = io.BytesIO()
    _write_stream(out, loaded, "http://sender.invalid/", threading.Event())
    return bytearray(out.getvalue())


def test_every_window_from_the_stream(tmp_path: Path) -> None:
    repo, data = build(tmp_path / "repo")
    loaded = load_image(repo, "tiny")
    assert len(list(stream_chunks(loaded))) == 2
    source = receiver(bytes(send(loaded)), LocalFallback(repo))
    assert source.read_window(0, 0) == data[:WINDOW]
    assert source.read_window(0, 1) == data[WINDOW:]
    assert (source.counts.streamed, source.counts.fetched, source.counts.damaged) == (2, 0, 0)


def test_a_damaged_chunk_comes_from_the_sender(tmp_path: Path) -> None:
    repo, data = build(tmp_path / "repo")
    stream = send(load_image(repo, "tiny"))
    stream[-200] ^= 0xFF  # inside the last chunk's body
    source = receiver(bytes(stream), LocalFallback(repo))
    assert source.read_window(0, 0) == data[:WINDOW]
    assert source.read_window(0, 1) == data[WINDOW:]
    assert (source.counts.streamed, source.counts.fetched, source.counts.damaged) == (1, 1, 1)


def test_nowhere_to_fetch_from_is_a_sentence(tmp_path: Path) -> None:
    repo, _ = build(tmp_path / "repo")
    stream = send(load_image(repo, "tiny"))
    source = receiver(bytes(stream[: len(stream) - 300]), Fallback(None))  # cut short
    assert source.read_window(0, 0) is not None
    with pytest.raises(CorruptData, match="names no web address to fetch it from"):
        source.read_window(0, 1)


def test_udpcast_missing_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.errors import ToolMissing
    from appliance.jobs.cast import receiver_argv
    from appliance.jobs.castsend import sender_argv

    monkeypatch.setattr("appliance.tools.shutil.which", lambda *a, **k: None)
    for argv in (lambda: sender_argv("eth0", 9000, 3, 60), lambda: receiver_argv(None, 9000, 60)):
        with pytest.raises(
            ToolMissing, match=r"udp-\w+ is missing; install the Debian package udpcast"
        ):
            argv()

"""The image sources on real files: a tiny repository built in a tmp folder (our own
encoder, chunks stored by the repository) and a disk that is a plain file."""

import os
from pathlib import Path

import pytest

from appliance.disk.blockio import aligned_buffer
from appliance.errors import CorruptData
from appliance.io.source import DiskSource, ImageSource, RepositorySource, SourceRegion
from appliance.io.windows import WINDOW, zero_hash
from appliance.repo.chunk import HEADER_SIZE, Encoder, content_hash
from appliance.repo.image import load_image
from appliance.repo.manifest import Index, Manifest, Region, index_hash
from appliance.repo.records import DiskRecord
from appliance.repo.repository import Repository

SIZE = 2 * WINDOW + 3 * 4096  # three windows: data, zeros, a short one with data


def build_image(root: Path) -> tuple[Repository, bytes]:
    """Image "tiny": the boot area (one stored window) and partition 1 (ext4, SIZE bytes)."""
    repo = Repository.open_or_create(root)
    data = bytearray(SIZE)
    data[:WINDOW] = os.urandom(WINDOW)
    data[2 * WINDOW + 4096 : 2 * WINDOW + 8192] = os.urandom(4096)
    boot = os.urandom(4096) + bytes(WINDOW - 4096)
    folder = repo.image_dir("tiny")
    folder.mkdir(parents=True)
    encoder = Encoder()
    regions: list[Region] = []
    layout = [
        ("outside", None, 0, WINDOW, None, [(0, 4096)], [boot]),
        ("p1", 1, WINDOW, SIZE, "ext4", [(0, WINDOW), (2 * WINDOW, 3 * 4096)], None),
    ]
    for name, number, start, size, fstype, used, pieces in layout:
        if pieces is None:
            pieces = [bytes(data[w : w + WINDOW]) for w in range(0, size, WINDOW)]
        chunks: list[str | None] = []
        for piece in pieces:
            if piece == bytes(len(piece)):
                chunks.append(None)
                continue
            chunk = content_hash(piece)
            repo.put_chunk(chunk, encoder.encode(piece))
            chunks.append(chunk)
        blob = Index(name, WINDOW, size, used, chunks).encode()
        (folder / f"{name}.idx").write_bytes(blob)
        regions.append(
            Region(
                name,
                number,
                start,
                size,
                "table" if number is None else "partclone",
                fstype,
                used_bytes=sum(n for _, n in used),
                index=f"{name}.idx",
                index_hash=index_hash(blob),
            )
        )
    disk = DiskRecord("loop9", "/dev/loop9", WINDOW + SIZE)
    manifest = Manifest("tiny", disk, None, regions, "now", "test", complete=True)
    (folder / "manifest.json").write_text(manifest.to_json())
    return repo, bytes(data)


def test_repository_source_reads_each_window(tmp_path: Path) -> None:
    repo, data = build_image(tmp_path / "repo")
    source: ImageSource = RepositorySource.from_image(load_image(repo, "tiny"))
    assert source.proves == "chunk hashes"
    assert [(r.name, r.partition, r.start, r.size, r.fstype) for r in source.regions] == [
        ("outside", None, 0, WINDOW, None),
        ("p1", 1, WINDOW, SIZE, "ext4"),
    ]
    assert source.regions[1].what == "partition 1 (ext4)"
    assert source.read_window(1, 0) == data[:WINDOW]
    assert source.read_window(1, 1) is None  # all zeros: never stored
    short = source.read_window(1, 2)
    assert short == data[2 * WINDOW :] and len(short) == 3 * 4096
    assert source.window_hash(1, 1) == zero_hash(WINDOW)
    assert source.window_hash(1, 2) == content_hash(data[2 * WINDOW :])
    wins = list(source.regions[1].windows(1))
    assert [(w.region, w.number, w.offset, w.length) for w in wins] == [
        (1, 0, WINDOW, WINDOW),
        (1, 2, 3 * WINDOW, 3 * 4096),
    ]


def test_a_damaged_chunk_names_its_region_and_image(tmp_path: Path) -> None:
    repo, _ = build_image(tmp_path / "repo")
    source = RepositorySource.from_image(load_image(repo, "tiny"))
    name = source.chunk(1, 2)
    assert name is not None
    path = repo.chunk_path(name)
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CorruptData, match=r"partition 1 \(ext4\) of image tiny"):
        source.read_window(1, 2)


def test_a_region_given_by_its_index_alone(tmp_path: Path) -> None:
    repo, data = build_image(tmp_path / "repo")
    index = Index.decode((repo.image_dir("tiny") / "p1.idx").read_bytes(), "p1.idx")
    source = RepositorySource.from_index(repo, "tiny", index)
    assert [(r.name, r.size) for r in source.regions] == [("p1", SIZE)]
    assert source.read_window(0, 0) == data[:WINDOW]


def test_disk_source_reads_used_bytes_only(tmp_path: Path) -> None:
    path = tmp_path / "disk"
    content = os.urandom(3 * 4096) + bytes(WINDOW)
    path.write_bytes(content + os.urandom(WINDOW))
    region = SourceRegion("p1", 1, 4096, 2 * WINDOW, "ext4", ((512, 1024), (8192, 100)), "p1")
    with DiskSource(str(path), 512, [region]) as disk:
        source: ImageSource = disk
        assert source.proves == "nothing"
        got = source.read_window(0, 0)
        assert got is not None and len(got) == WINDOW
        want = bytearray(WINDOW)
        want[512:1536] = content[4096 + 512 : 4096 + 1536]
        want[8192:8292] = content[4096 + 8192 : 4096 + 8292]
        assert got == bytes(want)
        assert source.read_window(0, 1) is None
        assert source.window_hash(0, 0) is None


def test_a_restore_reads_chunks_into_pooled_buffers_and_checks_them(tmp_path: Path) -> None:
    """A folder's chunks go into the pipeline's aligned buffers (no object per chunk) and
    decode as `fetch` ones do; a file longer than any chunk of its window fills the buffer
    and fails its check; a missing one is named."""
    repo, data = build_image(tmp_path / "repo")
    source = RepositorySource.from_image(load_image(repo, "tiny"))
    pooled = source.pooled
    assert pooled is not None
    assert pooled.size % 4096 == 0 and pooled.size > WINDOW + HEADER_SIZE
    buf = aligned_buffer(pooled.size)
    name = source.chunk(1, 0)  # random bytes: stored raw, the largest a chunk file gets
    assert name is not None
    path = repo.chunk_path(name)
    got = pooled.read(name, buf)
    assert got == path.stat().st_size == WINDOW + HEADER_SIZE
    out = bytearray(WINDOW)
    source.decode_into(1, name, WINDOW, memoryview(buf)[:got], memoryview(out))
    assert out == data[:WINDOW]
    path.write_bytes(path.read_bytes() + bytes(pooled.size))
    got = pooled.read(name, buf)
    assert got == pooled.size
    with pytest.raises(CorruptData, match=r"partition 1 \(ext4\) of image tiny"):
        source.decode_into(1, name, WINDOW, memoryview(buf)[:got], memoryview(out))
    path.unlink()
    with pytest.raises(CorruptData, match="missing"):
        pooled.read(name, buf)


def test_a_source_with_a_fetch_of_its_own_is_not_pooled(tmp_path: Path) -> None:
    """A subclass that brings chunks its own way (a multicast stream) keeps its `fetch`."""
    repo, _ = build_image(tmp_path / "repo")

    class Streamed(RepositorySource):
        def fetch(self, name: str) -> bytes:
            return b""

    assert Streamed.from_image(load_image(repo, "tiny")).pooled is None
    assert RepositorySource.from_image(load_image(repo, "tiny")).pooled is not None

"""The store seam: one contract, kept by a folder (LocalStore), by a dict (MemoryStore) and
by an S3 bucket (S3Store on moto's server, a process of its own); and a real Repository doing
its work over a store that is not a folder."""

from __future__ import annotations

import builtins
import errno
import itertools
import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.s3server import S3Server, moto_server

from appliance.disk.usage import filesystem_type
from appliance.errors import CorruptData, ImageError, RepositoryError
from appliance.jobs.catalog import collect
from appliance.jobs.verify import last_verified, record_verified
from appliance.repo import store as store_module
from appliance.repo.chunk import Encoder, content_hash
from appliance.repo.image import load_image, load_manifest
from appliance.repo.imagelog import ImageLog
from appliance.repo.manifest import Index, Manifest, Region, index_hash
from appliance.repo.records import DiskRecord
from appliance.repo.repository import WINDOW, ReadBack, Repository, chunk_key, storage_error
from appliance.repo.s3store import S3Store
from appliance.repo.store import (
    DIRECT_FS,
    DIRECT_MIN,
    PARTIAL,
    LocalStore,
    Store,
    check_key,
)


class MemoryStore:
    """A store that is a dict: nothing of it is a file."""

    where = "memory://test"

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.syncs = 0
        self.full = False  # every put fails as a full disk would

    def get(self, key: str) -> bytes:
        try:
            return self.values[check_key(key)]
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "no such key", key) from None

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
        return check_key(key) in self.values

    def put(self, key: str, data: bytes | memoryview, *, durable: bool) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.values[check_key(key)] = bytes(data)

    def append(self, key: str, data: bytes) -> None:
        self.values[check_key(key)] = self.values.get(key, b"") + data

    def list(self, prefix: str) -> Iterator[str]:
        return iter([key for key in self.values if key.startswith(prefix)])

    def folders(self, prefix: str) -> builtins.list[str]:
        rests = [key[len(prefix) :] for key in self.values if key.startswith(prefix)]
        return sorted({rest.split("/")[0] for rest in rests if "/" in rest})

    def delete(self, key: str) -> None:
        self.values.pop(check_key(key), None)

    def delete_folder(self, prefix: str) -> None:
        for key in [key for key in self.values if key.startswith(prefix)]:
            del self.values[key]

    def discard_partial_writes(self, prefix: str) -> int:
        return 0  # a put is one assignment: nothing half-written can be left

    def sync(self) -> None:
        self.syncs += 1

    def free_bytes(self) -> int | None:
        return None


BUCKETS = itertools.count()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server, a process of its own on loopback, for the module's tests."""
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(params=["local", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3")
        bucket = f"contract-{next(BUCKETS)}"
        server.client().create_bucket(Bucket=bucket)
        return S3Store(bucket, "some/prefix", client=server.client())
    return MemoryStore()


# -- the contract ------------------------------------------------------------------------
def test_put_get_round_trip(store: Store) -> None:
    store.put("a/b/c", b"hello", durable=False)
    store.put("top.json", b"{}", durable=True)
    assert store.get("a/b/c") == b"hello"
    assert store.get("top.json") == b"{}"
    store.put("a/b/c", b"bye", durable=True)  # replaces
    assert store.get("a/b/c") == b"bye"
    assert store.exists("a/b/c") and not store.exists("a/b/d")
    assert store.size("a/b/c") == 3
    assert store.head("a/b/c", 2) == (b"by", 3)
    buffer = bytearray(2)
    assert store.read_into("a/b/c", buffer) == 2 and buffer == b"by"
    buffer = bytearray(10)
    assert store.read_into("a/b/c", buffer) == 3 and buffer[:3] == b"bye"


def test_a_missing_key_is_file_not_found(store: Store) -> None:
    for call in (
        lambda: store.get("nothing"),
        lambda: store.size("no/thing"),
        lambda: store.head("no/thing", 16),
        lambda: store.read_into("no/thing", bytearray(4)),
    ):
        with pytest.raises(FileNotFoundError):
            call()
    assert not store.exists("no/thing")
    store.delete("no/thing")  # no error
    assert store.folders("no/") == []
    assert list(store.list("no/")) == []


@pytest.mark.parametrize("key", ["", "/etc/passwd", "a/../../b", "..", "a//b", "./a"])
def test_a_key_cannot_leave_the_store(store: Store, key: str) -> None:
    with pytest.raises(ValueError):
        store.put(key, b"x", durable=False)
    with pytest.raises(ValueError):
        store.get(key)


def test_list_and_folders(store: Store) -> None:
    for key in ("images/one/manifest.json", "images/one/p1.idx", "images/two/log.txt", "x"):
        store.put(key, key.encode(), durable=True)
    store.put("chunks/ab/cd/abcd", b"c", durable=False)
    assert sorted(store.list("images/")) == [
        "images/one/manifest.json",
        "images/one/p1.idx",
        "images/two/log.txt",
    ]
    assert sorted(store.list("images/one/")) == ["images/one/manifest.json", "images/one/p1.idx"]
    assert list(store.list("chunks/")) == ["chunks/ab/cd/abcd"]
    assert sorted(store.folders("images/")) == ["one", "two"]
    assert store.folders("chunks/ab/") == ["cd"]


def test_delete_and_delete_folder(store: Store) -> None:
    for key in ("images/one/manifest.json", "images/one/p1.idx", "images/two/log.txt"):
        store.put(key, b"x", durable=True)
    store.delete("images/one/p1.idx")
    assert not store.exists("images/one/p1.idx")
    store.delete_folder("images/one/")
    assert sorted(store.list("images/")) == ["images/two/log.txt"]
    assert store.folders("images/") == ["two"]
    store.put("images/one/manifest.json", b"again", durable=True)  # the folder can come back
    assert store.get("images/one/manifest.json") == b"again"
    store.put("images/one/p1.idx", b"again", durable=False)
    assert store.get("images/one/p1.idx") == b"again"


def test_append_makes_then_extends(store: Store) -> None:
    store.put("images/one/manifest.json", b"{}", durable=True)
    store.append("images/one/log.txt", b"first\n")
    store.append("images/one/log.txt", b"second\n")
    assert store.get("images/one/log.txt") == b"first\nsecond\n"


def test_sync_and_free_bytes(store: Store) -> None:
    store.put("k", b"v", durable=False)
    store.sync()
    free = store.free_bytes()
    assert free is None or free > 0


# -- the folder: what only a LocalStore has ---------------------------------------------
def test_local_keys_are_the_files_of_format_v1(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    name = "ab" * 32
    store.put(chunk_key(name), b"chunk", durable=False)
    store.put("images/one/manifest.json", b"{}", durable=True)
    assert (tmp_path / "chunks" / "ab" / "ab" / name).read_bytes() == b"chunk"
    assert (tmp_path / "images" / "one" / "manifest.json").read_bytes() == b"{}"
    # no temporary file is left behind by a write that finished
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [name, "manifest.json"]


def test_local_partial_writes_are_hidden_then_discarded(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("chunks/ab/cd/abcd", b"whole", durable=False)
    (tmp_path / ".partial" / ".abcd.4242.4243.tmp").write_bytes(b"half")  # a killed writer
    (tmp_path / "chunks" / "ab" / "cd" / ".abcd.4242.tmp").write_bytes(b"half")  # an old one's
    (tmp_path / "images" / ".deleting-old").mkdir(parents=True)  # a stopped delete
    (tmp_path / "images" / ".deleting-old" / "manifest.json").write_bytes(b"{}")
    assert list(store.list("chunks/")) == ["chunks/ab/cd/abcd"]
    assert store.folders("images/") == []
    assert store.discard_partial_writes(PARTIAL) == 1
    assert not (tmp_path / ".partial" / ".abcd.4242.4243.tmp").exists()
    assert store.discard_partial_writes("chunks/") == 1
    assert not (tmp_path / "chunks" / "ab" / "cd" / ".abcd.4242.tmp").exists()
    store.discard_partial_writes("images/")
    assert not (tmp_path / "images" / ".deleting-old").exists()
    assert store.get("chunks/ab/cd/abcd") == b"whole"


def test_a_chunk_is_written_in_one_folder_then_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every value being written is in PARTIAL (a job's start clears it without looking
    through the chunks' folders); the finished value is renamed to its key, nothing left."""
    store = LocalStore(tmp_path)
    seen: list[str] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        seen.append(src)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    for size in (10, DIRECT_MIN * 2):
        store.put_parts(chunk_key("ab" * 32), (os.urandom(size),))
    assert [Path(p).parent for p in seen] == [tmp_path / ".partial"] * 2
    assert not list((tmp_path / ".partial").iterdir())


def test_local_errors_keep_their_errno(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("file", b"x", durable=True)
    with pytest.raises(OSError) as caught:
        store.put("file/below", b"x", durable=False)  # a file where a folder must be
    assert caught.value.errno in (errno.EEXIST, errno.ENOTDIR)
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == [tmp_path / "file"]


# -- a real Repository over a store that is not a folder ---------------------------------
def _image(repo: Repository, name: str, windows: list[bytes]) -> Manifest:
    """Store an image the way a save does: chunks, then the index, then the manifest."""
    chunks: list[str | None] = []
    for data in windows:
        chunk = content_hash(data)
        if not repo.has_chunk(chunk):
            repo.put_chunk(chunk, Encoder().encode(data))
        chunks.append(chunk)
    size = len(windows) * WINDOW
    index = Index("p1", WINDOW, size, [(0, size)], chunks)
    blob = index.encode()
    region = Region("p1", 1, 1 << 20, size, "raw", used_bytes=size)
    region.index, region.index_hash = "p1.idx", index_hash(blob)
    manifest = Manifest(
        name, DiskRecord("sdz", "/dev/sdz", 1 << 30), None, [region], "now", "test", complete=True
    )
    repo.sync()
    repo.write_file(repo.image_key(name, region.index), blob)
    repo.write_file(repo.image_key(name, "manifest.json"), manifest.to_json().encode())
    ImageLog(repo, name).write(f"save of {name} complete")
    return manifest


def _window(fill: int) -> bytes:
    return bytes([fill]) * 1000 + os.urandom(64) + bytes(WINDOW - 1064)


def test_a_repository_in_memory() -> None:
    store = MemoryStore()
    with pytest.raises(RepositoryError, match=r"no repo\.json"):
        Repository.in_store(store)
    Repository.create(store)
    repo = Repository.in_store(store)
    assert repo.window == WINDOW and repo.where == "memory://test"

    shared, first, second = _window(1), _window(2), _window(3)
    one = _image(repo, "one", [shared, first])
    _image(repo, "two", [shared, second])
    assert repo.image_names() == ["one", "two"]
    assert sorted(repo.chunk_names()) == sorted(content_hash(w) for w in (shared, first, second))
    assert store.syncs == 2

    loaded = load_image(repo, "one")  # every index checked against the manifest's hash
    assert loaded.manifest.to_json() == one.to_json()
    chunks = loaded.indexes["p1"].chunks
    assert [repo.get_chunk(c) for c in chunks if c] == [
        Encoder().encode(shared),
        Encoder().encode(first),
    ]
    assert store.get("images/one/log.txt").decode().endswith("save of one complete\n")
    record_verified(repo, "one", 2)
    assert last_verified(repo, "one") is not None and last_verified(repo, "two") is None

    reader = ReadBack()
    name = content_hash(first)
    assert repo.stored_chunk_state(name, WINDOW, reader) == "same"
    damaged = bytearray(store.get(chunk_key(name)))
    damaged[-1] ^= 0xFF
    store.put(chunk_key(name), bytes(damaged), durable=False)
    assert repo.has_chunk(name)  # same length: only reading it back tells
    assert repo.stored_chunk_state(name, WINDOW, reader) == "damaged"
    store.put(chunk_key(name), bytes(damaged[:-1]), durable=False)
    assert not repo.has_chunk(name)
    assert repo.stored_chunk_state("0" * 64, WINDOW, reader) == "missing"

    repo.remove_image("one")  # delete, then gc: what only "one" used goes
    assert repo.image_names() == ["two"]
    record_verified(repo, "one", 2)  # a verify that ends after the delete brings nothing back
    assert repo.image_names() == ["two"]
    with pytest.raises(ImageError, match="no image named one"):
        load_manifest(repo, "one")
    result = collect(repo, dry_run=False)
    assert (result.removed_chunks, result.kept_chunks) == (1, 2)
    assert not repo.has_chunk(content_hash(first)) and repo.has_chunk(content_hash(shared))
    assert load_image(repo, "two").indexes["p1"].chunks[0] == content_hash(shared)


def test_a_damaged_image_in_memory_is_caught() -> None:
    store = MemoryStore()
    repo = Repository.create(store)
    _image(repo, "one", [_window(1)])
    store.put("images/one/p1.idx", store.get("images/one/p1.idx")[:-3], durable=True)
    with pytest.raises(CorruptData, match="does not match its hash"):
        load_image(repo, "one")
    store.delete("images/one/p1.idx")
    with pytest.raises(CorruptData, match="missing or unreadable"):
        load_image(repo, "one")
    manifest = store.get("images/one/manifest.json").replace(b'"p1.idx"', b'"../p1.idx"')
    store.put("images/one/manifest.json", manifest, durable=True)
    with pytest.raises((CorruptData, ImageError)):
        load_image(repo, "one")


def test_storage_errors_are_sentences_whatever_the_store() -> None:
    store = MemoryStore()
    repo = Repository.create(store)
    store.full = True
    with pytest.raises(RepositoryError, match=r"memory://test is full"):
        repo.put_chunk("ab" * 32, b"x")
    with pytest.raises(RepositoryError, match="is full"):
        repo.write_file(repo.image_key("one", "manifest.json"), b"{}")
    assert str(storage_error(store.where, OSError(errno.EROFS, "x"))).endswith(
        "is read-only; mount it read-write."
    )


def test_local_only_things_refuse_another_store() -> None:
    repo = Repository.create(MemoryStore())
    with pytest.raises(RepositoryError, match="not a folder on this machine"):
        repo.lock("save")
    with pytest.raises(RepositoryError, match="not a folder on this machine"):
        repo.chunk_path("ab" * 32)


def test_a_folder_repository_is_a_local_store(tmp_path: Path) -> None:
    repo = Repository.open_or_create(tmp_path / "r")
    assert isinstance(repo.store, LocalStore) and repo.root == tmp_path / "r"
    _image(repo, "one", [_window(1)])
    again = Repository.open(tmp_path / "r")
    assert load_image(again, "one").manifest.name == "one"
    assert (tmp_path / "r" / "images" / "one" / "p1.idx").is_file()


def test_local_put_parts_stores_them_joined(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    payload = memoryview(bytearray(os.urandom(100_000)))
    store.put_parts("chunks/ab/cd/x", (b"HEAD", payload, b"", b"tail"))
    assert store.get("chunks/ab/cd/x") == b"HEAD" + bytes(payload) + b"tail"
    assert not [p for p in (tmp_path / "chunks/ab/cd").iterdir() if p.name.startswith(".")]


@pytest.fixture(params=["disk", "tmpfs"])
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder on a local disk's filesystem (O_DIRECT), then one on tmpfs (none)."""
    where = str(request.param)
    if where == "disk":
        if filesystem_type(tmp_path) not in DIRECT_FS:
            pytest.skip(f"{tmp_path} is on {filesystem_type(tmp_path)}, not a local disk's")
        yield tmp_path, where
        return
    if not os.path.isdir("/dev/shm") or filesystem_type(Path("/dev/shm")) != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm")
    shm = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        yield shm, where
    finally:
        shutil.rmtree(shm)


def test_local_large_values_are_written_direct_where_the_filesystem_takes_it(
    folder: tuple[Path, str],
) -> None:
    """Values from DIRECT_MIN up go to the disk with O_DIRECT, in whole blocks then cut to
    their length; on tmpfs (no O_DIRECT) through the page cache. The bytes and the files
    are the same either way."""
    tmp_path, where = folder
    store = LocalStore(tmp_path)
    sizes = [DIRECT_MIN - 1, DIRECT_MIN, 100_001, 4096 * 9, WINDOW + 40, 200_000]
    values = {f"chunks/ab/{n:02d}/x": os.urandom(size) for n, size in enumerate(sizes)}
    for key, value in values.items():
        cut = len(value) // 3
        store.put_parts(key, (value[:7], memoryview(value)[7:cut], value[cut:]))
    for key, value in values.items():
        assert store.get(key) == value
        assert os.stat(store.path(key)).st_mode & 0o777 == 0o666 & ~_umask()
    assert store._direct is (where == "disk")
    folders = {store.path(key).parent for key in values}
    assert not [p for f in folders for p in f.iterdir() if p.name.startswith(".")]


def test_local_reads_into_an_aligned_buffer_are_direct_where_the_filesystem_takes_it(
    folder: tuple[Path, str],
) -> None:
    """read_into an mmap of whole blocks reads with O_DIRECT on a local disk (a save reads
    back every chunk it reuses), through the page cache on tmpfs; the same bytes and counts
    either way, a file longer than the buffer filling it (the caller sees it is too long)."""
    tmp_path, where = folder
    store = LocalStore(tmp_path)
    buffer = mmap.mmap(-1, 3 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for size in (1, 4095, 4096, 4097, 3 * 4096 - 1, 3 * 4096, 3 * 4096 + 10, 0):
        value = os.urandom(size)
        (tmp_path / "chunks").mkdir(exist_ok=True)
        (tmp_path / "chunks" / "v").write_bytes(value)
        got = store.read_into("chunks/v", buffer)
        assert got == min(size, len(buffer))
        assert buffer[:got] == value[:got]
    assert store._direct_reads is (where == "disk")
    small = bytearray(100)  # not aligned: through the page cache wherever it is
    assert store.read_into("chunks/v", small) == 0


@pytest.mark.parametrize("fstype", ["vfat", "exfat"])
def test_a_stick_formatted_fat_or_exfat_is_written_through_the_page_cache(
    fstype: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FAT's and exFAT's drivers take no direct write that makes a file longer (every chunk
    file's): the kernel would write it through the page cache and wait for the stick. So a
    folder there is written buffered, and its chunks are still read back with O_DIRECT."""
    if filesystem_type(tmp_path) not in DIRECT_FS:
        pytest.skip(f"{tmp_path} is on {filesystem_type(tmp_path)}, not a local disk's")
    monkeypatch.setattr(store_module, "filesystem_type", lambda _path: fstype)
    store = LocalStore(tmp_path)
    value = os.urandom(DIRECT_MIN * 3 + 5)
    store.put_parts("chunks/ab/cd/x", (value,))
    assert store._direct is False
    buffer = mmap.mmap(-1, DIRECT_MIN * 4, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    assert store.read_into("chunks/ab/cd/x", buffer) == len(value)
    assert buffer[: len(value)] == value
    assert store._direct_reads is True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_folder_named_relative_is_read_after_the_process_changes_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FUSE view's libfuse changes its folder to "/": a store opened as "repo" must still
    find its files there."""
    monkeypatch.chdir(tmp_path)
    store = LocalStore(Path("repo"))
    store.put("chunks/ab/cd/x", b"data", durable=False)
    monkeypatch.chdir("/")
    assert store.get("chunks/ab/cd/x") == b"data"
    assert store.where == str(tmp_path / "repo")


def test_a_job_clears_stopped_writes_from_one_folder_and_a_gc_from_every_one(
    tmp_path: Path,
) -> None:
    """A save's start removes what killed writers left in PARTIAL without going through the
    chunks' folders (that took seconds on a large repository); a gc, which lists every
    chunk anyway, also removes what versions before PARTIAL left among them."""
    repo = Repository.open_or_create(tmp_path / "r")
    _image(repo, "one", [_window(1)])
    killed = tmp_path / "r" / ".partial" / f".{'cd' * 32}.4242.4243.tmp"
    killed.write_bytes(b"half")
    older = tmp_path / "r" / "chunks" / "ab" / "ab" / f".{'ab' * 32}.4242.tmp"
    older.parent.mkdir(parents=True, exist_ok=True)
    older.write_bytes(b"half")
    assert repo.remove_tmp_files() == 1
    assert not killed.exists() and older.exists()
    result = collect(repo, dry_run=False)
    assert result.removed_tmp == 1 and not older.exists()
    assert load_image(repo, "one").manifest.name == "one"

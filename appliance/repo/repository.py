"""The image repository (format v1): content-addressed chunks and images, kept in a `Store`.

    repo.json                    format name + version, hash, chunk size
    chunks/ab/cd/<hash>          one chunk (see repo/chunk.py)
    images/<name>/manifest.json
    images/<name>/<region>.idx   per-region chunk index (its hash is in the manifest)
    images/<name>/log.txt        what happened, human-readable
    images/<name>/verified.json  when every chunk was last re-hashed
    lock                         present while a writer works (a local file: repo/lock.py)

Every read and write of that content goes through the store (repo/store.py): a folder
(`LocalStore`) or, read-only, a web server (repo/httpstore.py). Chunks are written without
fsync (a temporary name, then a rename); durability comes from one sync() before an image's
manifest says complete (an fsync per chunk costs too much). Manifests and indexes are put
durably.
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zstandard

from appliance.disk.usage import RAM_FILESYSTEMS, filesystem_type
from appliance.errors import CorruptData, ImageError, NetworkError, RepositoryError
from appliance.repo.chunk import HASH_HEX_LEN, HEADER, HEADER_SIZE, ZSTD, content_hash, header_ok
from appliance.repo.httpstore import HttpStore, is_web_address
from appliance.repo.lock import RepoLock
from appliance.repo.netfailure import network_share, raise_if_lost
from appliance.repo.store import LocalStore, Store, check_key

FORMAT = "appliance-repository"
VERSION = 1
WINDOW = 4 * 1024 * 1024
MARKER = "repo.json"  # the file that makes a folder a repository
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
HEX_RE = re.compile(r"^[0-9a-f]{64}$")


def check_image_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ImageError(
            f"The image name {name!r} is not allowed; use letters, digits, dots, "
            "dashes and underscores (at most 100), starting with a letter or digit."
        )
    return name


ADDRESS_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_store(location: str | os.PathLike[str]) -> Store:
    """The store a repository location names. Every job takes a location (a string that
    also reopens the repository in a child process, such as a FUSE view): a folder on this
    machine, an s3:// bucket, or an http(s):// address of a web server that serves one
    (read-only). A file server (ssh://, smb://, nfs://) is mounted before a job starts
    (repo/netmount.py), so its jobs see a folder; any other address is refused here."""
    text = os.fspath(location)
    if is_web_address(text):
        return HttpStore(text)  # read-only: see check_writable
    address = ADDRESS_RE.match(text)
    if address and address.group(1).lower() == "s3":
        from appliance.repo.s3store import open_s3  # boto3 is loaded for a bucket only

        return open_s3(text)
    if address:
        raise RepositoryError(
            f"The repository {text} is at a {address.group(1)}:// address, which this version "
            "cannot reach; mount the share and name the folder of the repository on it."
        )
    return LocalStore(Path(text))


def local_folder(location: str | os.PathLike[str]) -> Path | None:
    """The folder on this machine that a location names, None for a network address (the
    safety checks that ask which disk holds the repository need one)."""
    text = os.fspath(location)
    return None if ADDRESS_RE.match(text) else Path(text)


def holds_repository(location: str | os.PathLike[str]) -> bool:
    """A repository is at `location` (its repo.json is there), readable or not."""
    try:
        return open_store(location).exists(MARKER)
    except (RepositoryError, OSError):
        return False


def check_writable(store: Store, job: str) -> Store:
    """`store`, when `job` (a save, gc...) may write there: a web server may not."""
    if isinstance(store, HttpStore):
        raise store.read_only(job)
    return store


def chunk_key(name: str) -> str:
    return f"chunks/{name[:2]}/{name[2:4]}/{name}"


def storage_error(root: str | os.PathLike[str], exc: OSError) -> RepositoryError:
    """A user sentence for a failed write to the repository."""
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return RepositoryError(
            f"The repository at {root} is full; free some space or use "
            "another repository (the image is incomplete and can be resumed)."
        )
    if exc.errno == errno.EROFS:
        return RepositoryError(f"The repository at {root} is read-only; mount it read-write.")
    if exc.errno == errno.EACCES or exc.errno == errno.EPERM:
        return RepositoryError(f"The repository at {root} cannot be written: permission denied.")
    if exc.errno == errno.EIO:
        return RepositoryError(
            f"The disk holding the repository at {root} reported an input/output error."
        )
    return RepositoryError(f"Writing to the repository at {root} failed: {exc.strerror}.")


class ReadBack:
    """Reads stored chunks back to prove them, into buffers of its own (one per thread: no
    4 MiB allocation per chunk), and checks the bytes against the chunk's name."""

    def __init__(self, window: int = WINDOW) -> None:
        self.dctx = zstandard.ZstdDecompressor()
        self.blob = bytearray(window + HEADER_SIZE + 1)  # one more: a longer file shows
        self.out = bytearray(window + 1)

    def state(self, store: Store, key: str, name: str, length: int) -> str:
        size = store.read_into(key, self.blob)
        if not header_ok(bytes(self.blob[:HEADER_SIZE]), size):
            return "damaged"
        payload = memoryview(self.blob)[HEADER_SIZE:size]
        if HEADER.unpack_from(self.blob)[2] == ZSTD:
            try:
                back = self._decompress(payload, length + 1)
            except zstandard.ZstdError:
                return "damaged"
        else:
            back = payload
        return "same" if len(back) == length and content_hash(back) == name else "damaged"

    def _decompress(self, payload: memoryview, limit: int) -> memoryview:
        """At most `limit` bytes of the frame into self.out."""
        view = memoryview(self.out)[:limit]
        done = 0
        with self.dctx.stream_reader(payload) as stream:
            while done < limit:
                got = stream.readinto(view[done:])
                if not got:
                    break
                done += got
        return view[:done]


def check_save_place(path: Path, *, create: bool = False, allow_ram: bool = False) -> None:
    """Where a save may write: an existing repository (or any folder with `create`), not
    on tmpfs or ramfs (the live system's / and /tmp vanish at power off) unless allowed."""
    fstype = filesystem_type(path)
    if fstype in RAM_FILESYSTEMS and not allow_ram:
        raise RepositoryError(
            f"The repository {path} would be in memory ({fstype}) and lost "
            "at power off; choose a folder on a disk, or add --allow-ram."
        )
    if not create and not (path / "repo.json").exists():
        raise RepositoryError(f"There is no repository at {path}; add --create to make one.")


class Repository:
    """An image repository in a store. Open a folder with `open`, `open_or_create` or
    `open_for_save`; a repository in any other store with `in_store` (or `create`)."""

    def __init__(self, store: Store, meta: dict[str, Any]) -> None:
        self.store = store
        self.where = store.where  # for messages
        self.meta = meta
        self.window = int(meta["chunk_size"])
        self.share = network_share(store.root) if isinstance(store, LocalStore) else None

    @property
    def location(self) -> str:
        """What `open` takes to open this repository again (a child process does)."""
        return self.store.where

    @property
    def folder(self) -> Path | None:
        """The repository's folder on this machine; None for a store that is not one."""
        return self.store.root if isinstance(self.store, LocalStore) else None

    @property
    def root(self) -> Path:
        """The repository's folder on this machine, for what only a local folder has: the
        lock, the filesystem it is on, a FUSE view's --repo; messages use `where`."""
        if isinstance(self.store, LocalStore):
            return self.store.root
        raise RepositoryError(
            f"The repository at {self.where} is not a folder on this machine; this job needs one."
        )

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, location: str | os.PathLike[str]) -> Repository:
        store = open_store(location)
        if not isinstance(store, LocalStore):
            return cls.in_store(store)
        path = store.root
        if not path.is_dir():
            raise RepositoryError(f"There is no repository at {path}: the folder does not exist.")
        repo = cls.in_store(store)
        if not (path / "chunks").is_dir() or not (path / "images").is_dir():
            raise RepositoryError(
                f"The repository at {path} is truncated: its chunks or images folder is missing."
            )
        return repo

    @classmethod
    def in_store(cls, store: Store) -> Repository:
        """The repository kept in `store`, once its repo.json says it is one we read."""
        where = store.where
        try:
            meta = json.loads(store.get("repo.json"))
        except NetworkError as exc:  # not reached at the start: exit 6, as before
            raise RepositoryError(str(exc)) from exc
        except FileNotFoundError as exc:
            raise RepositoryError(
                f"{where} is not an image repository (it has no repo.json)."
            ) from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RepositoryError(
                f"The repository at {where} is damaged: repo.json cannot be read."
            ) from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise RepositoryError(
                f"{where} holds a repo.json of another program; it is not an "
                "image repository of this appliance."
            )
        if meta.get("version") != VERSION:
            raise RepositoryError(
                f"The repository at {where} has format version "
                f"{meta.get('version')}, and this appliance reads version "
                f"{VERSION}; use a newer appliance."
            )
        if meta.get("hash") != "blake3" or meta.get("chunk_size") != WINDOW:
            raise RepositoryError(
                f"The repository at {where} uses settings this appliance does not know."
            )
        return cls(store, meta)

    @classmethod
    def open_or_create(cls, root: str | os.PathLike[str]) -> Repository:
        store = open_store(root)  # a network address is refused in its own words
        check_writable(store, "saving an image")
        if not isinstance(store, LocalStore):
            return cls._open_or_create_in(store)
        path = Path(root)
        if path.exists() and not path.is_dir():
            raise RepositoryError(
                f"{path} is a file, not a folder; name a folder for the repository."
            )
        if path.is_dir() and (path / "repo.json").exists():
            return cls.open(path)
        if path.is_dir() and any(p for p in path.iterdir() if p.name != "lost+found"):
            raise RepositoryError(
                f"{path} is not empty and is not an image repository; name an "
                "empty folder or an existing repository."
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / "chunks").mkdir(exist_ok=True)
            (path / "images").mkdir(exist_ok=True)
        except OSError as exc:
            raise storage_error(path, exc) from exc
        return cls.create(LocalStore(path))

    @classmethod
    def _open_or_create_in(cls, store: Store) -> Repository:
        """open_or_create for a store that is not a folder (a bucket): its repository, or a
        new one where nothing is stored yet."""
        try:
            if store.exists(MARKER):
                return cls.in_store(store)
            if store.folders("") or next(iter(store.list("")), None) is not None:
                raise RepositoryError(
                    f"{store.where} is not empty and is not an image repository; name an "
                    "empty place or an existing repository."
                )
        except OSError as exc:
            raise storage_error(store.where, exc) from exc
        return cls.create(store)

    @classmethod
    def create(cls, store: Store) -> Repository:
        """A new, empty repository in `store`: its repo.json, written durably."""
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "hash": "blake3",
            "chunk_size": WINDOW,
            "compression": "zstd",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        try:
            store.put("repo.json", (json.dumps(meta, indent=2) + "\n").encode(), durable=True)
        except OSError as exc:
            raise storage_error(store.where, exc) from exc
        return cls(store, meta)

    @classmethod
    def open_for_save(
        cls, root: str | os.PathLike[str], *, create: bool = False, allow_ram: bool = False
    ) -> Repository:
        """The repository a save writes to: created only when asked, never in RAM unless
        asked (the live system's / and /tmp vanish at power off)."""
        store = open_store(root)  # a network address is refused in its own words
        check_writable(store, "saving an image")
        if not isinstance(store, LocalStore):
            if create:
                return cls._open_or_create_in(store)
            try:
                there = store.exists(MARKER)
            except OSError as exc:
                raise storage_error(store.where, exc) from exc
            if not there:
                raise RepositoryError(
                    f"There is no repository at {store.where}; add --create to make one."
                )
            return cls.in_store(store)
        path = Path(root)
        check_save_place(path, create=create, allow_ram=allow_ram)
        return cls.open_or_create(path) if create else cls.open(path)

    def lock(self, command: str) -> RepoLock:
        # One writer at a time: a file made with O_EXCL in the repository's folder
        # (repo/lock.py), which works on every filesystem a folder may be on. A bucket's
        # lock is an object made with a conditional PUT (repo/s3lock.py); any other store
        # (a web server: read-only) has none, and `root` refuses it rather than lock nothing.
        check_writable(self.store, command.split()[0])
        if isinstance(self.store, LocalStore):
            return RepoLock(self.root / "lock", command)
        from appliance.repo.s3lock import S3Lock
        from appliance.repo.s3store import S3Store

        if isinstance(self.store, S3Store):
            return S3Lock(self.store, command)
        return RepoLock(self.root / "lock", command)  # `root` says why there is none

    # -- chunks --------------------------------------------------------------------------
    def chunk_path(self, name: str) -> Path:
        """The file of a chunk (a local folder only: for tests and tools that look at it)."""
        return self.root / chunk_key(name)

    def has_chunk(self, name: str) -> bool:
        """True when the chunk is stored whole (header and length agree)."""
        try:
            head, size = self.store.head(chunk_key(name), HEADER_SIZE)
        except OSError as exc:
            raise_if_lost(self.store, exc, f"checking chunk {name}", self.share)
            if isinstance(exc, FileNotFoundError):
                return False
            raise storage_error(self.where, exc) from exc
        return header_ok(head, size)

    def chunk_exists(self, name: str) -> bool:
        """A file or value of that name is there (whole or not: see has_chunk)."""
        return self.store.exists(chunk_key(name))

    def stored_chunk_state(self, name: str, length: int, reader: ReadBack) -> str:
        """ "same" when the stored chunk reads back as the `length` bytes named `name`,
        "missing", or "damaged" (a chunk a new image reuses must be one that can be read)."""
        try:
            return reader.state(self.store, chunk_key(name), name, length)
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            if exc.errno == errno.EIO:
                return "damaged"
            raise storage_error(self.where, exc) from exc

    def damaged_chunk(self, name: str, problem: CorruptData) -> CorruptData:
        """The sentence for a chunk that failed its check as it was decoded: one from a web
        server names the server (it, or a proxy on the way, sent those bytes)."""
        if not isinstance(self.store, HttpStore):
            return problem
        detail = str(problem).removeprefix(f"Chunk {name} ").rstrip(".")
        return CorruptData(
            f"The web server at {self.store.server} sent chunk {name} with wrong content "
            f"(it {detail})."
        )

    @property
    def read_parallelism(self) -> int:
        """How many chunks a restore should fetch at once: 1 from a folder (the reads are
        sequential and cached), more from a server that answers each request with a delay."""
        if isinstance(self.store, HttpStore):
            return self.store.parallel_reads
        return 1 if isinstance(self.store, LocalStore) else 8  # a bucket: a server too

    def put_chunk(self, name: str, blob: bytes) -> None:
        try:
            self.store.put(chunk_key(name), blob, durable=False)
        except OSError as exc:
            raise storage_error(self.where, exc) from exc

    def get_chunk(self, name: str) -> bytes:
        try:
            return self.store.get(chunk_key(name))
        except OSError as exc:
            raise_if_lost(self.store, exc, f"reading chunk {name}", self.share)  # not damage
            if isinstance(exc, FileNotFoundError):
                raise CorruptData(f"Chunk {name} is missing from the repository.") from exc
            raise CorruptData(f"Chunk {name} cannot be read: {exc.strerror}.") from exc

    def chunk_names(self) -> Iterator[str]:
        """The name of every stored chunk."""
        for key in self.store.list("chunks/"):
            name = key.rpartition("/")[2]
            if len(name) == HASH_HEX_LEN and HEX_RE.match(name) and key == chunk_key(name):
                yield name

    def iter_chunks(self) -> Iterator[Path]:
        """Every stored chunk file (a local folder only; see chunk_names)."""
        for name in self.chunk_names():
            yield self.chunk_path(name)

    def chunk_size(self, name: str) -> int:
        """Bytes the stored chunk takes."""
        try:
            return self.store.size(chunk_key(name))
        except OSError as exc:
            raise storage_error(self.where, exc) from exc

    def delete_chunk(self, name: str) -> None:
        try:
            self.store.delete(chunk_key(name))
        except OSError as exc:
            raise storage_error(self.where, exc) from exc

    def remove_tmp_files(self) -> int:
        """Delete what chunk writes that were stopped left behind; how many."""
        return self.store.discard_partial_writes("chunks/")

    # -- files of images -----------------------------------------------------------------
    def image_key(self, image: str, file: str) -> str:
        """The key of one file of an image: "images/NAME/FILE". The file's name may come
        from a manifest: one that leaves the image's folder means a damaged image."""
        if not file or "/" in file or file.startswith("."):
            raise CorruptData(
                f"The image {image} names a file {file!r} outside its folder; the image is damaged."
            )
        return f"images/{check_image_name(image)}/{file}"

    def describe(self, key: str) -> str:
        """Where a key is, for messages (a file's path, for a folder)."""
        return f"{self.where.rstrip('/')}/{check_key(key)}"

    def exists(self, key: str) -> bool:
        return self.store.exists(key)

    def read(self, key: str) -> bytes:
        """A file of the repository; OSError (FileNotFoundError: it is not there) for the
        caller to say what it means."""
        return self.store.get(key)

    def write_file(self, key: str, data: bytes) -> None:
        """A manifest or index, durably (fsync, rename); a full disk gets a sentence."""
        try:
            self.store.put(key, data, durable=True)
        except OSError as exc:
            raise storage_error(self.where, exc) from exc

    def sync(self) -> None:
        try:
            self.store.sync()
        except OSError as exc:
            raise storage_error(self.where, exc) from exc

    # -- images --------------------------------------------------------------------------
    def image_dir(self, name: str) -> Path:
        """The image's folder (a local folder only; see image_key)."""
        return self.root / "images" / check_image_name(name)

    def image_names(self) -> list[str]:
        return sorted(name for name in self.store.folders("images/") if NAME_RE.match(name))

    def remove_image(self, name: str) -> None:
        """Every file of the image, as one step where the store can (a folder: renamed to a
        hidden name, then removed; a stopped delete leaves no half image)."""
        try:
            self.store.delete_folder(f"images/{check_image_name(name)}/")
        except OSError as exc:
            raise storage_error(self.where, exc) from exc

    def remove_partial_images(self) -> None:
        """Remove what image deletes that were stopped left behind."""
        self.store.discard_partial_writes("images/")

    def free_bytes(self) -> int | None:
        return self.store.free_bytes()

"""The image repository (format v1, or v2: encrypted): content-addressed chunks and images,
kept in a `Store`.

    repo.json                    format name + version, hash, chunk size (v2: id, encryption;
                                 a v1 repository with a key: id, authentication)
    key.json                     v2 and keyed v1: the master key, wrapped by the passphrase
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

Format v2 (`appliance init --encrypt`) keeps the same layout; repo/sealing.py says what
changes: a chunk's name is a keyed hash, and every chunk, manifest and index is encrypted and
authenticated (bound to its key and to the repository's id). The repository seals and opens
them here, so the jobs see the same bytes as in v1 and every store holds either format.
A v1 repository with a key (`appliance key add`, repo/signing.py) stays v1 and signs each
manifest it writes here (manifest.mac); repo/image.py checks the signature.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from appliance.errors import CorruptData, ImageError, NetworkError, RepositoryError
from appliance.repo.chunk import HASH_HEX_LEN, HEADER_SIZE, content_hash, header_ok, zero_chunk_name
from appliance.repo.chunk import ReadBack as ReadBack
from appliance.repo.keyring import remember, unlock
from appliance.repo.lock import RepoLock
from appliance.repo.netfailure import network_share, raise_if_lost
from appliance.repo.places import ADDRESS_RE as ADDRESS_RE
from appliance.repo.places import MARKER as MARKER
from appliance.repo.places import check_save_place as check_save_place
from appliance.repo.places import check_writable as check_writable
from appliance.repo.places import holds_repository as holds_repository
from appliance.repo.places import local_folder as local_folder
from appliance.repo.places import open_store as open_store
from appliance.repo.places import storage_error as storage_error
from appliance.repo.places import web_store
from appliance.repo.sealing import (
    CHUNK,
    KEY_FILE,
    Sealer,
    new_repository_id,
    sealed_header_ok,
    wrap_key,
)
from appliance.repo.sealing import OVERHEAD as SEAL_OVERHEAD
from appliance.repo.signing import Signer, is_keyed, manifest_image, unlock_signer
from appliance.repo.store import PARTIAL, LocalStore, Store, check_key

FORMAT = "appliance-repository"
VERSION = 1
ENCRYPTED = 2  # the format version of an encrypted repository
WINDOW = 4 * 1024 * 1024
# Chunk files a restore reads at once from a folder. One at a time, the restore of the bench
# disk from a repository on the disk it writes waited on each file: four took its writing
# phase from 1.92 to 1.68 s (medians of 16 interleaved pairs, 15 of them faster; two: 7 %,
# eight: 11 % faster). From memory it is the same either way.
LOCAL_READS = 4
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
HEX_RE = re.compile(r"^[0-9a-f]{64}$")
HEX32_RE = re.compile(r"^[0-9a-f]{32}$")


def check_image_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ImageError(
            f"The image name {name!r} is not allowed; use letters, digits, dots, "
            "dashes and underscores (at most 100), starting with a letter or digit."
        )
    return name


def chunk_key(name: str) -> str:
    return f"chunks/{name[:2]}/{name[2:4]}/{name}"


class Repository:
    """An image repository in a store. Open a folder with `open`, `open_or_create` or
    `open_for_save`; a repository in any other store with `in_store` (or `create`)."""

    def __init__(self, store: Store, meta: dict[str, Any], sealer: Sealer | None = None) -> None:
        self.store = store
        self.where = store.where  # for messages
        self.meta = meta
        self.window = int(meta["chunk_size"])
        self.sealer = sealer  # format v2: the unlocked keys; None for v1
        self.signer: Signer | None = None  # v1 with a key (in_store sets it): signs manifests
        self.share = network_share(store.root) if isinstance(store, LocalStore) else None
        self._buffers = threading.local()  # per thread: the buffer a chunk is sealed into

    @property
    def encrypted(self) -> bool:
        """Format v2: every chunk, manifest and index encrypted and authenticated."""
        return self.sealer is not None

    def chunk_name(self, data: bytes | memoryview) -> str:
        """The name of the chunk that holds `data`: blake3 (v1) or keyed blake3 (v2)."""
        return self.sealer.name(data) if self.sealer else content_hash(data)

    def zero_name(self, length: int) -> str:
        """The name `length` zero bytes would have (such a window is never stored)."""
        return self.sealer.zero_name(length) if self.sealer else zero_chunk_name(length)

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
        if meta.get("version") not in (VERSION, ENCRYPTED):
            raise RepositoryError(
                f"The repository at {where} has format version "
                f"{meta.get('version')}, and this appliance reads version "
                f"{VERSION} or {ENCRYPTED}; use a newer appliance."
            )
        if meta.get("hash") != "blake3" or meta.get("chunk_size") != WINDOW:
            raise RepositoryError(
                f"The repository at {where} uses settings this appliance does not know."
            )
        if meta["version"] == VERSION and not is_keyed(meta):
            return cls(store, meta)
        repo_id = meta.get("id")
        if not isinstance(repo_id, str) or not HEX32_RE.match(repo_id):
            raise RepositoryError(
                f"The repository at {where} is damaged: its repo.json has no valid id."
            )
        if meta["version"] == ENCRYPTED:
            return cls(store, meta, unlock(store, repo_id))
        repo = cls(store, meta)
        repo.signer = unlock_signer(store, meta, repo_id)
        return repo

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
    def create(
        cls, store: Store, *, passphrase: str | None = None, kdf: dict[str, int] | None = None
    ) -> Repository:
        """A new, empty repository in `store`: its repo.json, written durably. With a
        passphrase, format v2: a new master key, wrapped into key.json (written first: a
        repo.json that says v2 always has its key file)."""
        meta: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "hash": "blake3",
            "chunk_size": WINDOW,
            "compression": "zstd",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        sealer = None
        try:
            if passphrase is not None:
                sealer = Sealer(new_repository_id(), os.urandom(32))
                meta.update(
                    version=ENCRYPTED,
                    id=sealer.repository,
                    encryption={"cipher": "aes-256-gcm", "names": "blake3-keyed", "key": KEY_FILE},
                )
                key_file = wrap_key(sealer.master, sealer.repository, passphrase, kdf)
                store.put(KEY_FILE, key_file, durable=True)
            store.put("repo.json", (json.dumps(meta, indent=2) + "\n").encode(), durable=True)
        except OSError as exc:
            raise storage_error(store.where, exc) from exc
        if sealer is not None:
            remember(sealer)
        return cls(store, meta, sealer)

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
        return sealed_header_ok(head, size) if self.sealer else header_ok(head, size)

    def chunk_exists(self, name: str) -> bool:
        """A file or value of that name is there (whole or not: see has_chunk)."""
        return self.store.exists(chunk_key(name))

    def stored_chunk_state(self, name: str, length: int, reader: ReadBack) -> str:
        """ "same" when the stored chunk reads back as the `length` bytes named `name`,
        "missing", or "damaged" (a chunk a new image reuses must be one that can be read)."""
        try:
            if self.sealer is None:
                return reader.state(self.store, chunk_key(name), name, length)
            try:
                plain = self.open_chunk(name, self.store.get(chunk_key(name)))
            except CorruptData:
                return "damaged"
            return reader.check(memoryview(plain), name, length, self.sealer.name)
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            if exc.errno == errno.EIO:
                return "damaged"
            raise storage_error(self.where, exc) from exc

    def damaged_chunk(self, name: str, problem: CorruptData) -> CorruptData:
        """The sentence for a chunk that failed its check as it was decoded: one from a web
        server names the server (it, or a proxy on the way, sent those bytes)."""
        web = web_store(self.store)
        if web is None:
            return problem
        detail = str(problem).removeprefix(f"Chunk {name} ").rstrip(".")
        return CorruptData(
            f"The web server at {web.server} sent chunk {name} with wrong content (it {detail})."
        )

    @property
    def read_parallelism(self) -> int:
        """How many chunks a restore should fetch at once: LOCAL_READS from a folder, more
        from a server that answers each request with a delay."""
        web = web_store(self.store)
        if web is not None:
            return web.parallel_reads
        return LOCAL_READS if isinstance(self.store, LocalStore) else 8  # a bucket: a server too

    def put_chunk(self, name: str, blob: bytes | Sequence[bytes | memoryview]) -> None:
        """Store a chunk file's bytes (repo/chunk.py), or its parts (header, payload: a
        folder writes them with one writev, no joined copy); sealed in an encrypted
        repository (into this thread's buffer, reused for every chunk)."""
        key = chunk_key(name)
        parts = (blob,) if isinstance(blob, bytes) else tuple(blob)
        data: bytes | memoryview | None = None
        if self.sealer is not None:
            plain = parts[0] if len(parts) == 1 else b"".join(parts)
            out = getattr(self._buffers, "seal", None)
            if out is None or len(out) < len(plain) + SEAL_OVERHEAD:
                out = self._buffers.seal = bytearray(self.window + HEADER_SIZE + SEAL_OVERHEAD)
            data = self.sealer.seal_into(key, plain, out, CHUNK)
        elif len(parts) == 1:
            data = parts[0]
        try:
            if data is not None:
                self.store.put(key, data, durable=False)
            elif isinstance(self.store, LocalStore):
                self.store.put_parts(key, parts)
            else:
                self.store.put(key, b"".join(parts), durable=False)
        except OSError as exc:
            raise storage_error(self.where, exc) from exc

    def get_chunk(self, name: str) -> bytes:
        """A chunk file's bytes (opened and authenticated in an encrypted repository; a
        chunk that fails raises CorruptData)."""
        return bytes(self.open_chunk(name, self.fetch_chunk(name)))

    def fetch_chunk(self, name: str) -> bytes:
        """A chunk as stored (still sealed in an encrypted repository: `open_chunk` opens
        it, on the thread that decodes it)."""
        try:
            return self.store.get(chunk_key(name))
        except OSError as exc:
            raise self._unreadable_chunk(name, exc) from exc

    @property
    def reads_chunks_into(self) -> bool:
        """Whether `fetch_chunk_into` can fill a caller's buffer: a folder on this machine,
        not sealed (opening a sealed chunk makes new bytes anyway)."""
        return isinstance(self.store, LocalStore) and self.sealer is None

    def fetch_chunk_into(self, name: str, buffer: mmap.mmap) -> int:
        """`fetch_chunk` into `buffer` (chunk.file_buffer_size bytes): how many bytes it
        holds; a file longer than the buffer fills it, and fails its header check. A folder
        on this machine only (`reads_chunks_into`)."""
        if not isinstance(self.store, LocalStore):
            raise TypeError("fetch_chunk_into reads a folder on this machine")
        try:
            return self.store.read_cached_into(chunk_key(name), buffer)
        except OSError as exc:
            raise self._unreadable_chunk(name, exc) from exc

    def _unreadable_chunk(self, name: str, exc: OSError) -> CorruptData:
        """A chunk that cannot be read is damage, unless the repository's place itself was
        lost (a network share gone: raise_if_lost raises that instead)."""
        raise_if_lost(self.store, exc, f"reading chunk {name}", self.share)
        if isinstance(exc, FileNotFoundError):
            return CorruptData(f"Chunk {name} is missing from the repository.")
        return CorruptData(f"Chunk {name} cannot be read: {exc.strerror}.")

    def open_chunk(self, name: str, blob: bytes | memoryview) -> bytes | memoryview:
        """A stored chunk's bytes as repo/chunk.py reads them (v2: opened, checked)."""
        if self.sealer is None:
            return blob
        return self.sealer.open(chunk_key(name), bytes(blob), f"Chunk {name}")

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

    def remove_tmp_files(self, *, everywhere: bool = False) -> int:
        """Delete what chunk writes that were stopped left behind; how many. They are in
        one folder (a LocalStore's PARTIAL); `everywhere` (a gc, which lists every chunk
        anyway) also looks among the chunks, where versions before it left them."""
        count = self.store.discard_partial_writes(PARTIAL)
        if everywhere:
            count += self.store.discard_partial_writes("chunks/")
        return count

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

    def sealed(self, key: str) -> bool:
        """An encrypted repository seals every file of an image but its log."""
        if self.sealer is None or not key.startswith("images/"):
            return False
        return not key.endswith("/log.txt")

    def read(self, key: str) -> bytes:
        """A file of the repository; OSError (FileNotFoundError: it is not there) for the
        caller to say what it means; in an encrypted repository, CorruptData when the file
        fails its authentication check."""
        blob = self.store.get(key)
        if self.sealer is not None and self.sealed(key):
            return self.sealer.open(key, blob, f"The file {self.describe(key)}")
        return blob

    def read_stored(self, key: str) -> bytes:
        """A file as stored (sealed in an encrypted repository): a copy to another place."""
        return self.store.get(key)

    def write_file(self, key: str, data: bytes) -> None:
        """A manifest or index, durably (fsync, rename; a keyed v1 manifest with its MAC,
        repo/signing.py); a full disk gets a sentence."""
        if self.sealer is not None and self.sealed(key):
            data = self.sealer.seal(key, data)
        try:
            if self.signer is not None and manifest_image(key) is not None:
                self.signer.write(self.store, key, data)  # with its MAC, power-cut safe
            else:
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

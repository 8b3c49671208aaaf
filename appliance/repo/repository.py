"""The image repository (format v1): a plain folder of content-addressed chunks and images.

    REPO/repo.json                   format name + version, hash, chunk size
    REPO/chunks/ab/cd/<hash>         one chunk (see chunkfmt)
    REPO/images/<name>/manifest.json
    REPO/images/<name>/<region>.idx  per-region chunk index (its hash is in the manifest)
    REPO/images/<name>/log.txt       what happened, human-readable
    REPO/lock                        present while a writer works

Chunk files are written under a temporary name and renamed; durability comes from one
syncfs() before an image's manifest says complete (an fsync per chunk costs too much).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zstandard

from appliance.disk.usage import RAM_FILESYSTEMS, filesystem_type
from appliance.errors import CorruptData, ImageError, RepositoryError
from appliance.repo.chunk import HASH_HEX_LEN, HEADER, HEADER_SIZE, ZSTD, content_hash, header_ok
from appliance.repo.lock import RepoLock

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


def write_file_durably(path: Path, data: bytes) -> None:
    """Write to a temporary name, fsync, rename over `path`, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (FAT over FUSE, SMB) cannot fsync a folder
    finally:
        os.close(fd)


def syncfs(folder: Path) -> None:
    """Flush every file of the filesystem that holds `folder` to stable storage."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def storage_error(root: Path, exc: OSError) -> RepositoryError:
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

    def state(self, path: Path, name: str, length: int) -> str:
        with open(path, "rb", buffering=0) as handle:
            size = handle.readinto(self.blob)
        if size is None or not header_ok(bytes(self.blob[:HEADER_SIZE]), size):
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
    """A repository folder. Open with `Repository.open` or `Repository.open_or_create`."""

    def __init__(self, root: Path, meta: dict[str, Any]) -> None:
        self.root = root
        self.meta = meta
        self.window = int(meta["chunk_size"])
        self._made_dirs: set[str] = set()

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> Repository:
        path = Path(root)
        if not path.is_dir():
            raise RepositoryError(f"There is no repository at {path}: the folder does not exist.")
        meta_path = path / "repo.json"
        if not meta_path.exists():
            raise RepositoryError(f"{path} is not an image repository (it has no repo.json).")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RepositoryError(
                f"The repository at {path} is damaged: repo.json cannot be read."
            ) from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise RepositoryError(
                f"{path} holds a repo.json of another program; it is not an "
                "image repository of this appliance."
            )
        if meta.get("version") != VERSION:
            raise RepositoryError(
                f"The repository at {path} has format version "
                f"{meta.get('version')}, and this appliance reads version "
                f"{VERSION}; use a newer appliance."
            )
        if meta.get("hash") != "blake3" or meta.get("chunk_size") != WINDOW:
            raise RepositoryError(
                f"The repository at {path} uses settings this appliance does not know."
            )
        if not (path / "chunks").is_dir() or not (path / "images").is_dir():
            raise RepositoryError(
                f"The repository at {path} is truncated: its chunks or images folder is missing."
            )
        return cls(path, meta)

    @classmethod
    def open_or_create(cls, root: str | os.PathLike[str]) -> Repository:
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
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "hash": "blake3",
            "chunk_size": WINDOW,
            "compression": "zstd",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / "chunks").mkdir(exist_ok=True)
            (path / "images").mkdir(exist_ok=True)
            write_file_durably(path / "repo.json", (json.dumps(meta, indent=2) + "\n").encode())
        except OSError as exc:
            raise storage_error(path, exc) from exc
        return cls(path, meta)

    @classmethod
    def open_for_save(
        cls, root: str | os.PathLike[str], *, create: bool = False, allow_ram: bool = False
    ) -> Repository:
        """The repository a save writes to: created only when asked, never in RAM unless
        asked (the live system's / and /tmp vanish at power off)."""
        path = Path(root)
        check_save_place(path, create=create, allow_ram=allow_ram)
        return cls.open_or_create(path) if create else cls.open(path)

    def lock(self, command: str) -> RepoLock:
        return RepoLock(self.root / "lock", command)

    # -- chunks --------------------------------------------------------------------------
    def chunk_path(self, name: str) -> Path:
        return self.root / "chunks" / name[:2] / name[2:4] / name

    def has_chunk(self, name: str) -> bool:
        """True when the chunk is stored whole (header and length agree)."""
        path = self.chunk_path(name)
        try:
            with open(path, "rb") as handle:
                head = handle.read(HEADER_SIZE)
                size = os.fstat(handle.fileno()).st_size
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise storage_error(self.root, exc) from exc
        return header_ok(head, size)

    def stored_chunk_state(self, name: str, length: int, reader: ReadBack) -> str:
        """ "same" when the stored chunk reads back as the `length` bytes named `name`,
        "missing", or "damaged" (a chunk a new image reuses must be one that can be read)."""
        try:
            return reader.state(self.chunk_path(name), name, length)
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            if exc.errno == errno.EIO:
                return "damaged"
            raise storage_error(self.root, exc) from exc

    def put_chunk(self, name: str, blob: bytes) -> None:
        sub = name[:4]
        folder = self.root / "chunks" / name[:2] / name[2:4]
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        try:
            if sub not in self._made_dirs:
                folder.mkdir(parents=True, exist_ok=True)
                self._made_dirs.add(sub)
            with open(tmp, "wb") as handle:
                handle.write(blob)
            os.replace(tmp, folder / name)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise storage_error(self.root, exc) from exc

    def get_chunk(self, name: str) -> bytes:
        try:
            return self.chunk_path(name).read_bytes()
        except FileNotFoundError as exc:
            raise CorruptData(f"Chunk {name} is missing from the repository.") from exc
        except OSError as exc:
            raise CorruptData(f"Chunk {name} cannot be read: {exc.strerror}.") from exc

    def iter_chunks(self) -> Iterator[Path]:
        """Every stored chunk file (temporary files excluded)."""
        for path in (self.root / "chunks").glob("*/*/*"):
            if len(path.name) == HASH_HEX_LEN and HEX_RE.match(path.name):
                yield path

    def write_file(self, path: Path, data: bytes) -> None:
        """A manifest or index, durably (fsync, rename); a full disk gets a sentence."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_file_durably(path, data)
        except OSError as exc:
            raise storage_error(self.root, exc) from exc

    def sync(self) -> None:
        try:
            syncfs(self.root)
        except OSError as exc:
            raise storage_error(self.root, exc) from exc

    # -- images --------------------------------------------------------------------------
    def image_dir(self, name: str) -> Path:
        return self.root / "images" / check_image_name(name)

    def image_names(self) -> list[str]:
        folder = self.root / "images"
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and NAME_RE.match(p.name))

    def free_bytes(self) -> int:
        stat = os.statvfs(self.root)
        return stat.f_bavail * stat.f_frsize

    def remove_tmp_files(self) -> int:
        """Delete temporary chunk files a killed writer left behind; how many."""
        count = 0
        for path in (self.root / "chunks").glob("*/*/.*.tmp"):
            with contextlib.suppress(OSError):
                path.unlink()
                count += 1
        return count

    def remove_image_dir(self, name: str) -> None:
        shutil.rmtree(self.image_dir(name), ignore_errors=True)

"""Where a repository is: the store a location names, where a save may put one, and the
sentence for a failed write.

A location is a folder on this machine, an s3:// bucket, or an http(s):// address of a web
server (read-only); repo/repository.py opens the repository kept there.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

from appliance.disk.usage import RAM_FILESYSTEMS, filesystem_type
from appliance.errors import RepositoryError
from appliance.repo.store import LocalStore, Store

if TYPE_CHECKING:  # loaded with the first web address only: urllib3 costs every command 0.03 s
    from appliance.repo.httpstore import HttpStore

MARKER = "repo.json"  # the file that makes a folder a repository


ADDRESS_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_web_address(location: str) -> bool:
    return location.lower().startswith(("http://", "https://"))


def web_store(store: object) -> HttpStore | None:
    """`store` when a web server holds it, else None (without loading the web client: no
    web store exists before its module is loaded)."""
    module = sys.modules.get("appliance.repo.httpstore")
    if module is not None and isinstance(store, module.HttpStore):
        return cast("HttpStore", store)
    return None


def open_store(location: str | os.PathLike[str]) -> Store:
    """The store a repository location names. Every job takes a location (a string that
    also reopens the repository in a child process, such as a FUSE view): a folder on this
    machine, an s3:// bucket, or an http(s):// address of a web server that serves one
    (read-only). A file server (ssh://, smb://, nfs://) is mounted before a job starts
    (repo/netmount.py), so its jobs see a folder; any other address is refused here."""
    text = os.fspath(location)
    if is_web_address(text):
        from appliance.repo.httpstore import HttpStore

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


def encrypted_at(location: str | os.PathLike[str]) -> str | None:
    """The id of the encrypted repository (format v2) at `location`, None for anything else
    (no repository, format v1, or a place that cannot be read now)."""
    meta = _repo_json(location)
    return _repo_id(meta) if meta.get("version") == 2 else None


def keyed_at(location: str | os.PathLike[str]) -> str | None:
    """The id of the repository at `location` when a passphrase guards its key: encrypted
    (format v2), or format v1 with a key that signs its images (repo/signing.py); None for
    anything else."""
    meta = _repo_json(location)
    if meta.get("version") == 2 or (meta.get("version") == 1 and "authentication" in meta):
        return _repo_id(meta)
    return None


def _repo_json(location: str | os.PathLike[str]) -> dict[str, object]:
    """The repo.json at `location`; {} when there is none that can be read now."""
    try:
        meta = json.loads(open_store(location).get(MARKER))
    except (RepositoryError, OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _repo_id(meta: dict[str, object]) -> str | None:
    repo_id = meta.get("id")
    return repo_id if isinstance(repo_id, str) else None


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


def check_writable(store: Store, job: str) -> Store:
    """`store`, when `job` (a save, gc...) may write there: a web server may not."""
    web = web_store(store)
    if web is not None:
        raise web.read_only(job)
    return store


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

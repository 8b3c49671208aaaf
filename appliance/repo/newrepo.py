"""`appliance init`: a new, empty repository (format v1, or v2 with a passphrase)."""

from __future__ import annotations

import os

from appliance.errors import RepositoryError
from appliance.repo.places import MARKER, check_writable, open_store, storage_error
from appliance.repo.repository import Repository
from appliance.repo.store import LocalStore


def initialise(
    location: str | os.PathLike[str],
    *,
    passphrase: str | None = None,
    kdf: dict[str, int] | None = None,
) -> Repository:
    """`appliance init`: a new repository at an empty place (a folder is made)."""
    store = open_store(location)
    check_writable(store, "making a repository")
    try:
        if store.exists(MARKER):
            raise RepositoryError(f"There is already a repository at {store.where}.")
        if isinstance(store, LocalStore):
            path = store.root
            if path.exists() and not path.is_dir():
                raise RepositoryError(
                    f"{path} is a file, not a folder; name a folder for the repository."
                )
            if path.is_dir() and any(p for p in path.iterdir() if p.name != "lost+found"):
                raise RepositoryError(
                    f"{path} is not empty; name an empty folder for the repository."
                )
            path.mkdir(parents=True, exist_ok=True)
            (path / "chunks").mkdir(exist_ok=True)
            (path / "images").mkdir(exist_ok=True)
        elif store.folders("") or next(iter(store.list("")), None) is not None:
            raise RepositoryError(
                f"{store.where} is not empty; name an empty place for the repository."
            )
    except OSError as exc:
        raise storage_error(store.where, exc) from exc
    return Repository.create(store, passphrase=passphrase, kdf=kdf)

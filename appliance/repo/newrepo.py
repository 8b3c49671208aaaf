"""`appliance init`: a new, empty repository (format v1, or v2 with a passphrase); and
`appliance key add`: a key that signs the manifests of a v1 repository (repo/signing.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from appliance.errors import ApplianceError, RepositoryError, UsageError
from appliance.repo.image import load_indexes
from appliance.repo.keyring import remember
from appliance.repo.manifest import Manifest
from appliance.repo.places import MARKER, check_writable, open_store, storage_error
from appliance.repo.repository import ENCRYPTED, Repository
from appliance.repo.sealing import KEY_FILE, Sealer, new_repository_id, wrap_key
from appliance.repo.signing import AUTHENTICATION, Signer, is_keyed, mac_key
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


@dataclass
class Signed:
    """An image `key add` signed: its name, and whether its save had finished."""

    name: str
    complete: bool


def refuse_key(where: str, meta: dict[str, Any]) -> None:
    """UsageError when the repository whose repo.json is `meta` cannot take a new key: it
    has one (format v2, or a v1 repository with a key)."""
    if meta.get("version") == ENCRYPTED:
        raise UsageError(
            f"The repository at {where} is encrypted, so its images are authenticated "
            "already by its key; nothing was written."
        )
    if is_keyed(meta):
        raise UsageError(
            f"The repository at {where} has a key already (`appliance key change` gives it "
            "a new passphrase); nothing was written."
        )


def add_key(repo: Repository, passphrase: str, kdf: dict[str, int] | None = None) -> list[Signed]:
    """`appliance key add` on a v1 repository whose lock the caller holds: every image's
    manifest (its own hash) and, for a complete image, its indexes (their hashes) are
    checked before anything is written; then a new master key goes into key.json, each
    manifest as it is now gets its MAC, and repo.json says so last (a stopped `key add`
    leaves a repository without a key, as before). What was signed, in order."""
    try:  # read again under the lock: another appliance may have added one meanwhile
        refuse_key(repo.where, json.loads(repo.store.get(MARKER)))
    except (OSError, ValueError) as exc:
        raise RepositoryError(
            f"The repository at {repo.where} is damaged: repo.json cannot be read."
        ) from exc
    manifests: list[tuple[str, bytes, Manifest]] = []
    for name in repo.image_names():
        key = repo.image_key(name, "manifest.json")
        try:
            blob = repo.read(key)
            manifest = Manifest.from_json(blob.decode("utf-8"), repo.describe(key))
            if manifest.complete:
                load_indexes(repo, manifest)
        except FileNotFoundError:
            continue  # a folder without a manifest is no image
        except (ApplianceError, OSError, UnicodeDecodeError) as exc:
            why = str(exc) if isinstance(exc, ApplianceError) else "its manifest cannot be read"
            why = why[:1].lower() + why[1:]
            raise RepositoryError(
                f"No key was added: image {name} cannot be signed ({why.rstrip('.')}); "
                f"delete it with `appliance delete --repo {repo.where} --image {name}`, or "
                "restore the repository's copy, and add the key again."
            ) from exc
        manifests.append((name, blob, manifest))
    signer = Signer(new_repository_id(), os.urandom(32))
    meta = dict(repo.meta, id=signer.repository, authentication=AUTHENTICATION)
    try:
        key_file = wrap_key(signer.master, signer.repository, passphrase, kdf)
        repo.store.put(KEY_FILE, key_file, durable=True)
        for name, blob, _ in manifests:
            repo.store.put(mac_key(name), signer.mac_file(name, blob), durable=True)
        repo.store.put(MARKER, (json.dumps(meta, indent=2) + "\n").encode(), durable=True)
    except OSError as exc:
        raise storage_error(repo.where, exc) from exc
    remember(Sealer(signer.repository, signer.master))
    repo.meta, repo.signer = meta, signer
    return [Signed(name, manifest.complete) for name, _, manifest in manifests]

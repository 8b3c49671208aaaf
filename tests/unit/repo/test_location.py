"""A repository is named by a location that every job, and a child process, opens the same
way; an address this version cannot reach is one sentence, before anything is made."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import RepositoryError
from appliance.repo.httpstore import HttpStore
from appliance.repo.repository import Repository, holds_repository, local_folder, open_store
from appliance.repo.store import LocalStore


def test_a_folder_reopens_from_its_location(tmp_path: Path) -> None:
    repo = Repository.open_or_create(tmp_path / "r")
    assert repo.folder == tmp_path / "r" and local_folder(repo.location) == tmp_path / "r"
    again = Repository.open(repo.location)
    assert again.meta == repo.meta and isinstance(again.store, LocalStore)
    assert holds_repository(repo.location) and not holds_repository(tmp_path)


@pytest.mark.parametrize(
    "address", ["ftp://10.0.0.1/images/", "ftp://server/images", "smb://server/share/images"]
)
def test_a_network_address_is_refused_in_one_sentence(tmp_path: Path, address: str) -> None:
    scheme = address.split(":")[0]
    for opener in (open_store, Repository.open, Repository.open_or_create):
        with pytest.raises(RepositoryError, match=rf"{scheme}:// address"):
            opener(address)
    with pytest.raises(RepositoryError, match=rf"{scheme}:// address"):
        Repository.open_for_save(address, create=True)
    assert local_folder(address) is None and not holds_repository(address)
    assert not Path(address).exists() and not Path(address.split(":")[0] + ":").exists()


@pytest.mark.parametrize("address", ["http://10.0.0.1/images", "HTTPS://server:8443/a/b/"])
def test_a_web_address_is_a_read_only_store(address: str) -> None:
    store = open_store(address)
    assert isinstance(store, HttpStore) and store.where.endswith("/")
    assert open_store(store.where).where == store.where  # a child process reopens it
    assert local_folder(address) is None
    for opener in (Repository.open_or_create, Repository.open_for_save):
        with pytest.raises(RepositoryError, match="is on a web server, which is read-only"):
            opener(address)
    assert not Path(address).exists()

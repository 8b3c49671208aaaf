import json

import pytest

from appliance.errors import ImageError, RepositoryError
from appliance.repo.chunk import Encoder, content_hash
from appliance.repo.repository import Repository, check_image_name


def test_create_then_open(tmp_path) -> None:  # type: ignore[no-untyped-def]
    repo = Repository.open_or_create(tmp_path / "r")
    meta = json.loads((tmp_path / "r" / "repo.json").read_text())
    assert meta["format"] == "appliance-repository" and meta["version"] == 1
    assert Repository.open(tmp_path / "r").window == repo.window


def test_foreign_folder_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "photos.jpg").write_bytes(b"x")
    with pytest.raises(RepositoryError, match="not empty and is not an image repository"):
        Repository.open_or_create(tmp_path)
    with pytest.raises(RepositoryError, match=r"no repo\.json"):
        Repository.open(tmp_path)


@pytest.mark.parametrize(
    "content, match",
    [
        ("{", "damaged"),
        ('{"format": "borg"}', "another program"),
        ('{"format": "appliance-repository", "version": 9}', "version 9"),
    ],
)
def test_bad_repo_json(tmp_path, content: str, match: str) -> None:  # type: ignore[no-untyped-def]
    Repository.open_or_create(tmp_path / "r")
    (tmp_path / "r" / "repo.json").write_text(content)
    with pytest.raises(RepositoryError, match=match):
        Repository.open(tmp_path / "r")


def test_truncated_repo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    Repository.open_or_create(tmp_path / "r")
    (tmp_path / "r" / "chunks").rmdir()
    with pytest.raises(RepositoryError, match="truncated"):
        Repository.open(tmp_path / "r")


def test_chunks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    repo = Repository.open_or_create(tmp_path / "r")
    data = b"some bytes" * 100
    name = content_hash(data)
    assert not repo.has_chunk(name)
    repo.put_chunk(name, Encoder().encode(data))
    assert repo.has_chunk(name)
    assert [p.name for p in repo.iter_chunks()] == [name]
    repo.chunk_path(name).write_bytes(b"")  # a chunk emptied by a crash is not "stored"
    assert not repo.has_chunk(name)


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "x" * 101, "sp ace"])
def test_bad_image_names(name: str) -> None:
    with pytest.raises(ImageError):
        check_image_name(name)

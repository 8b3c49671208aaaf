"""An encrypted (format v2) repository in a folder: opening, sealing, refusing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.secrets import run_handed_over

from appliance.errors import CorruptData, RepositoryError
from appliance.repo import keyring
from appliance.repo.chunk import Decoder, Encoder, ReadBack, content_hash
from appliance.repo.image import authenticity_note, load_manifest
from appliance.repo.newrepo import initialise
from appliance.repo.repository import Repository, chunk_key
from appliance.repo.sealing import KEY_FILE

CHEAP = {"iterations": 1, "memory_kib": 64, "lanes": 1}


@pytest.fixture(autouse=True)
def fresh_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(keyring.ENV_PASSPHRASE, raising=False)
    keyring.forget_all()
    keyring.set_passphrase_source(lambda where: "pw one")
    yield
    keyring.forget_all()
    keyring.set_passphrase_source(None)


def make(tmp_path: Path, name: str = "r") -> Repository:
    return initialise(tmp_path / name, passphrase="pw one", kdf=CHEAP)


def reopen(path: Path) -> Repository:
    keyring.forget_all()  # as a new process would: the passphrase is asked again
    return Repository.open(path)


def test_init_writes_v2_and_a_key_file(tmp_path: Path) -> None:
    repo = make(tmp_path)
    meta = json.loads((tmp_path / "r" / "repo.json").read_text())
    assert meta["version"] == 2 and len(meta["id"]) == 32 and repo.encrypted
    assert (tmp_path / "r" / KEY_FILE).exists()
    assert reopen(tmp_path / "r").meta["id"] == meta["id"]
    with pytest.raises(RepositoryError, match="already a repository"):
        make(tmp_path)


def test_chunks_round_trip_sealed(tmp_path: Path) -> None:
    repo = make(tmp_path)
    data = b"the customer's tax return " * 4000
    name = repo.chunk_name(data)
    assert name != content_hash(data)
    repo.put_chunk(name, Encoder().encode(data))
    stored = (tmp_path / "r" / chunk_key(name)).read_bytes()
    assert b"tax return" not in stored and repo.has_chunk(name)
    again = reopen(tmp_path / "r")
    assert again.chunk_name(data) == name  # dedup across jobs
    assert Decoder(again.chunk_name).decode(again.get_chunk(name), name, len(data)) == data
    assert again.stored_chunk_state(name, len(data), ReadBack()) == "same"


def test_chunks_sealed_one_after_another_each_read_back(tmp_path: Path) -> None:
    """put_chunk seals into one buffer per thread: a chunk written later changes no earlier
    one, a larger one after a small one fits."""
    repo = make(tmp_path)
    datas = [b"small " * 10, bytes(range(256)) * 4096, b"last " * 3000]
    names = [repo.chunk_name(d) for d in datas]
    for name, data in zip(names, datas, strict=True):
        repo.put_chunk(name, Encoder().encode(data))
    again = reopen(tmp_path / "r")
    for name, data in zip(names, datas, strict=True):
        assert Decoder(again.chunk_name).decode(again.get_chunk(name), name, len(data)) == data


def test_a_chunk_put_as_parts_is_sealed_whole(tmp_path: Path) -> None:
    repo = make(tmp_path)
    data = b"payroll " * 9000
    name = repo.chunk_name(data)
    repo.put_chunk(name, Encoder().encode_parts(memoryview(data)))
    again = reopen(tmp_path / "r")
    assert Decoder(again.chunk_name).decode(again.get_chunk(name), name, len(data)) == data


def test_a_swapped_chunk_fails_its_check(tmp_path: Path) -> None:
    repo = make(tmp_path)
    one, two = b"a" * 5000, b"b" * 5000
    names = [repo.chunk_name(d) for d in (one, two)]
    for name, data in zip(names, (one, two), strict=True):
        repo.put_chunk(name, Encoder().encode(data))
    root = tmp_path / "r"
    (root / chunk_key(names[0])).write_bytes((root / chunk_key(names[1])).read_bytes())
    with pytest.raises(CorruptData, match="authentication"):
        repo.get_chunk(names[0])
    assert repo.stored_chunk_state(names[0], 5000, ReadBack()) == "damaged"


def test_manifests_are_sealed_and_bound_to_the_repository(tmp_path: Path) -> None:
    first, second = make(tmp_path, "one"), make(tmp_path, "two")
    key = "images/pc/manifest.json"
    first.write_file(key, b'{"secret": "serial S3Z2NB"}')
    assert b"S3Z2NB" not in (tmp_path / "one" / key).read_bytes()
    assert first.read(key) == b'{"secret": "serial S3Z2NB"}'
    (tmp_path / "two" / "images" / "pc").mkdir(parents=True)
    (tmp_path / "two" / key).write_bytes((tmp_path / "one" / key).read_bytes())
    with pytest.raises(CorruptData, match="authentication"):
        second.read(key)  # the same passphrase, another repository: refused
    with pytest.raises(CorruptData, match="authentication"):
        load_manifest(second, "pc")


def test_wrong_passphrase_is_one_sentence_and_reads_nothing(tmp_path: Path) -> None:
    make(tmp_path)
    keyring.set_passphrase_source(lambda where: "pw two")
    with pytest.raises(keyring.WrongPassphraseError, match="passphrase is wrong") as caught:
        reopen(tmp_path / "r")
    assert caught.value.exit_code == RepositoryError.exit_code


def test_no_passphrase_anywhere(tmp_path: Path) -> None:
    make(tmp_path)
    keyring.set_passphrase_source(lambda where: None)
    with pytest.raises(RepositoryError, match="APPLIANCE_PASSPHRASE"):
        reopen(tmp_path / "r")


def test_the_environment_gives_the_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make(tmp_path)
    keyring.set_passphrase_source(lambda where: None)
    monkeypatch.setenv(keyring.ENV_PASSPHRASE, "pw one")
    assert reopen(tmp_path / "r").encrypted


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_missing_or_damaged_key_file_names_the_backup(tmp_path: Path, damage: str) -> None:
    make(tmp_path)
    key_file = tmp_path / "r" / KEY_FILE
    if damage == "missing":
        key_file.unlink()
    else:
        key_file.write_bytes(key_file.read_bytes()[:-20])
    with pytest.raises(RepositoryError, match="appliance key export"):
        reopen(tmp_path / "r")


def test_a_key_file_of_another_repository_is_refused(tmp_path: Path) -> None:
    make(tmp_path, "one"), make(tmp_path, "two")
    (tmp_path / "two" / KEY_FILE).write_bytes((tmp_path / "one" / KEY_FILE).read_bytes())
    with pytest.raises(RepositoryError, match="belongs to another repository"):
        reopen(tmp_path / "two")


def test_children_get_the_keys_through_a_pipe(tmp_path: Path) -> None:
    repo = make(tmp_path)
    assert repo.sealer is not None
    env, fds = keyring.handover()
    assert fds and repo.sealer.master.hex() not in json.dumps(env)  # not in the environment
    code = (
        "from appliance.repo import keyring; from appliance.repo.repository import Repository;"
        "keyring.set_passphrase_source(lambda where: None);"
        f"print(Repository.open({str(tmp_path / 'r')!r}).sealer.master.hex())"
    )
    child = run_handed_over(code, env, fds)
    assert child.stdout.strip() == repo.sealer.master.hex(), child.stderr  # no passphrase


def test_v1_is_unchanged_and_says_it_is_not_authenticated(tmp_path: Path) -> None:
    repo = initialise(tmp_path / "plain")
    assert not repo.encrypted and repo.meta["version"] == 1
    data = b"x" * 100
    assert repo.chunk_name(data) == content_hash(data)
    repo.write_file("images/pc/manifest.json", b"{}")
    assert (tmp_path / "plain" / "images" / "pc" / "manifest.json").read_bytes() == b"{}"

    class Loaded:
        def __init__(self, repo: Repository) -> None:
            self.repo = repo
            self.manifest = type("M", (), {"name": "pc"})()

    assert "not authenticated" in (authenticity_note(Loaded(repo)) or "")  # type: ignore[arg-type]
    assert authenticity_note(Loaded(make(tmp_path))) is None  # type: ignore[arg-type]

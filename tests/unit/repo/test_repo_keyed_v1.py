"""A v1 repository with a key (`appliance key add`, repo/signing.py) in a folder: what
`add_key` checks and writes, manifests signed as they are written, and every manifest
checked against its MAC before it is used."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.secrets import run_handed_over

from appliance.errors import CorruptData, RepositoryError, UsageError
from appliance.repo import keyring
from appliance.repo.image import authenticity_note, load_image, load_manifest
from appliance.repo.manifest import Index, Manifest, Region, index_hash, manifest_hash
from appliance.repo.newrepo import add_key, initialise
from appliance.repo.records import DiskRecord, SaveStats
from appliance.repo.repository import WINDOW, Repository
from appliance.repo.sealing import KEY_FILE

CHEAP = {"iterations": 1, "memory_kib": 64, "lanes": 1}
SIZE = 2 * WINDOW


@pytest.fixture(autouse=True)
def fresh_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(keyring.ENV_PASSPHRASE, raising=False)
    keyring.forget_all()
    keyring.set_passphrase_source(lambda where: "pw one")
    yield
    keyring.forget_all()
    keyring.set_passphrase_source(None)


def save_image(repo: Repository, name: str, *, complete: bool = True, serial: str = "S1") -> None:
    """An image as a save writes it: its index, then its manifest (through write_file)."""
    blob = Index("outside", WINDOW, SIZE, [(0, 4096)], ["ab" * 32, None]).encode()
    region = Region("outside", None, 0, SIZE, "raw", used_bytes=4096, stored_windows=1,
                    index="outside.idx", index_hash=index_hash(blob))  # fmt: skip
    repo.write_file(repo.image_key(name, "outside.idx"), blob)
    manifest = Manifest(
        name=name,
        disk=DiskRecord("sdz", "/dev/sdz", SIZE, serial=serial),
        table=None,
        regions=[region],
        created="2026-12-02T06:00:00+0000",
        tool_version="test",
        complete=complete,
        stats=SaveStats(seconds=1.0) if complete else None,
    )
    repo.write_file(repo.image_key(name, "manifest.json"), manifest.to_json().encode())


def keyed(tmp_path: Path, name: str = "r", images: tuple[str, ...] = ("pc",)) -> Repository:
    repo = initialise(tmp_path / name)
    for image in images:
        save_image(repo, image)
    add_key(repo, "pw one", CHEAP)
    return repo


def reopen(path: Path) -> Repository:
    keyring.forget_all()  # as a new process would: the passphrase is asked again
    return Repository.open(path)


def forge(path: Path, image: str = "pc") -> None:
    """What a forger who can write the folder does: edit a field, recompute the hash."""
    manifest = path / "images" / image / "manifest.json"
    data = json.loads(manifest.read_text())
    data["disk"]["serial"] = "FORGED"
    data["manifest_hash"] = manifest_hash(data)
    manifest.write_text(json.dumps(data, indent=2) + "\n")


def files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_key_add_keeps_v1_and_signs_every_image(tmp_path: Path) -> None:
    repo = initialise(tmp_path / "r")
    save_image(repo, "pc")
    save_image(repo, "half", complete=False)
    signed = add_key(repo, "pw one", CHEAP)
    assert [(s.name, s.complete) for s in signed] == [("half", False), ("pc", True)]
    meta = json.loads((tmp_path / "r" / "repo.json").read_text())
    assert meta["version"] == 1 and len(meta["id"]) == 32
    assert meta["authentication"] == {"mac": "blake3-keyed", "key": "key.json"}
    assert (tmp_path / "r" / KEY_FILE).exists()
    for image in ("pc", "half"):
        assert (tmp_path / "r" / "images" / image / "manifest.mac").exists()
    again = reopen(tmp_path / "r")
    assert again.signer is not None and not again.encrypted
    loaded = load_image(again, "pc")
    assert authenticity_note(loaded) is None
    assert not load_manifest(again, "half").complete  # a resume may go on


def test_a_manifest_written_after_key_add_is_signed(tmp_path: Path) -> None:
    keyed(tmp_path)
    repo = reopen(tmp_path / "r")
    save_image(repo, "later")
    assert load_image(reopen(tmp_path / "r"), "later").manifest.name == "later"


@pytest.mark.parametrize("mac", ["kept", "dropped"])
def test_a_consistent_forgery_is_refused(tmp_path: Path, mac: str) -> None:
    keyed(tmp_path)
    forge(tmp_path / "r")
    if mac == "dropped":
        (tmp_path / "r" / "images" / "pc" / "manifest.mac").unlink()
    repo = reopen(tmp_path / "r")
    with pytest.raises(CorruptData, match="The image pc is not signed by this repository's key"):
        load_manifest(repo, "pc")
    with pytest.raises(CorruptData, match="copied in from another repository"):
        load_image(repo, "pc")


def test_a_manifest_and_mac_from_another_keyed_repository_are_refused(tmp_path: Path) -> None:
    keyed(tmp_path, "one")
    keyed(tmp_path, "two")  # the same passphrase, the same image name
    for file in ("manifest.json", "manifest.mac"):
        source = tmp_path / "one" / "images" / "pc" / file
        (tmp_path / "two" / "images" / "pc" / file).write_bytes(source.read_bytes())
    with pytest.raises(CorruptData, match="not signed by this repository's key"):
        load_image(reopen(tmp_path / "two"), "pc")


def test_an_image_moved_to_another_name_is_refused(tmp_path: Path) -> None:
    keyed(tmp_path)
    images = tmp_path / "r" / "images"
    (images / "pc").rename(images / "other")
    with pytest.raises(CorruptData, match="The image other is not signed"):
        load_image(reopen(tmp_path / "r"), "other")


def test_a_damaged_image_stops_key_add_before_anything_is_written(tmp_path: Path) -> None:
    repo = initialise(tmp_path / "r")
    save_image(repo, "good")
    save_image(repo, "pc")
    index = tmp_path / "r" / "images" / "pc" / "outside.idx"
    index.write_bytes(index.read_bytes() + b"x")
    before = files(tmp_path / "r")
    with pytest.raises(RepositoryError, match="No key was added: image pc cannot be signed"):
        add_key(repo, "pw one", CHEAP)
    good = tmp_path / "r" / "images" / "good" / "manifest.json"
    good.write_text(good.read_text().replace('"S1"', '"S2"'))  # edited, its hash not
    index.write_bytes(index.read_bytes()[:-1])
    with pytest.raises(RepositoryError, match="image good cannot be signed"):
        add_key(repo, "pw one", CHEAP)
    after = files(tmp_path / "r")
    assert after.keys() == before.keys() and after["repo.json"] == before["repo.json"]
    assert not list((tmp_path / "r").rglob("manifest.mac")) and "key.json" not in after


def test_key_add_is_refused_where_a_key_exists(tmp_path: Path) -> None:
    repo = keyed(tmp_path)
    with pytest.raises(UsageError, match="has a key already"):
        add_key(repo, "pw two", CHEAP)
    v2 = initialise(tmp_path / "v2", passphrase="pw one", kdf=CHEAP)
    with pytest.raises(UsageError, match="encrypted, so its images are authenticated"):
        add_key(v2, "pw two", CHEAP)


def test_a_wrong_passphrase_is_the_v2_sentence(tmp_path: Path) -> None:
    keyed(tmp_path)
    keyring.set_passphrase_source(lambda where: "pw two")
    with pytest.raises(keyring.WrongPassphraseError, match="passphrase is wrong"):
        reopen(tmp_path / "r")
    keyring.set_passphrase_source(lambda where: None)
    with pytest.raises(RepositoryError, match="has a key that signs its images and no passphrase"):
        reopen(tmp_path / "r")


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_missing_or_damaged_key_file_names_the_backup(tmp_path: Path, damage: str) -> None:
    keyed(tmp_path)
    key_file = tmp_path / "r" / KEY_FILE
    if damage == "missing":
        key_file.unlink()
    else:
        key_file.write_bytes(key_file.read_bytes()[:-20])
    with pytest.raises(RepositoryError, match="appliance key export"):
        reopen(tmp_path / "r")


def test_an_unknown_authentication_is_refused(tmp_path: Path) -> None:
    keyed(tmp_path)
    repo_json = tmp_path / "r" / "repo.json"
    meta = json.loads(repo_json.read_text())
    meta["authentication"]["mac"] = "something-newer"
    repo_json.write_text(json.dumps(meta))
    with pytest.raises(RepositoryError, match="use a newer appliance"):
        reopen(tmp_path / "r")


def test_children_get_the_key_through_a_pipe(tmp_path: Path) -> None:
    repo = keyed(tmp_path)
    assert repo.signer is not None
    env, fds = keyring.handover()
    code = (
        "from appliance.repo import keyring; from appliance.repo.repository import Repository;"
        "from appliance.repo.image import load_image;"
        "keyring.set_passphrase_source(lambda where: None);"
        f"print(load_image(Repository.open({str(tmp_path / 'r')!r}), 'pc').manifest.name)"
    )
    child = run_handed_over(code, env, fds)
    assert child.stdout.strip() == "pc", child.stderr  # checked, with no passphrase asked


def test_a_repository_without_a_key_says_how_to_add_one(tmp_path: Path) -> None:
    repo = initialise(tmp_path / "plain")
    save_image(repo, "pc")
    assert not (tmp_path / "plain" / "images" / "pc" / "manifest.mac").exists()
    note = authenticity_note(load_image(repo, "pc")) or ""
    assert "not authenticated" in note and "appliance key add --repo" in note


class PowerCut(Exception):
    """The machine lost power: nothing after this write happened."""


@pytest.mark.parametrize("cut_at", [1, 2, 3])
def test_a_power_cut_while_a_manifest_is_replaced_leaves_a_signed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut_at: int
) -> None:
    """A save rewrites its manifest (incomplete, then complete) in three durable writes:
    the MAC file with the new and the old MAC, the manifest, the MAC file with the new one.
    Power lost before any of them, the image still loads, as the old or the new manifest,
    and the next save of it signs as before."""
    repo = initialise(tmp_path / "r")
    add_key(repo, "pw one", CHEAP)
    save_image(repo, "pc", complete=False)
    store = repo.store
    real_put = store.put
    puts: list[str] = []

    def put(key: str, data: bytes | memoryview, *, durable: bool) -> None:
        puts.append(key)
        if len(puts) == cut_at + 1:  # the index's write is the first
            raise PowerCut
        real_put(key, data, durable=durable)

    monkeypatch.setattr(store, "put", put)
    with pytest.raises(PowerCut):
        save_image(repo, "pc", complete=True)
    monkeypatch.setattr(store, "put", real_put)
    again = reopen(tmp_path / "r")
    manifest = load_manifest(again, "pc")  # signed: the old one, or the new one
    assert manifest.complete is (cut_at == 3)
    save_image(again, "pc", complete=True)
    assert load_image(reopen(tmp_path / "r"), "pc").manifest.complete
    recorded = json.loads((tmp_path / "r/images/pc/manifest.mac").read_text())
    assert "previous" not in recorded  # once written whole, only the manifest's own MAC

"""A v1 repository given a key (`appliance key add`), through the real command line on real
loop disks.

A plain GPT disk (FAT32, ext4, swap) is saved into an ordinary v1 repository; `key add`
(the passphrase in a root-only file) signs that image, and it restores onto a blank disk that
then equals the source, with no "not authenticated" note; a save after `key add` restores
too. A consistent forgery (a manifest field edited and manifest_hash recomputed, its MAC kept
or dropped) and a manifest with its MAC copied from another keyed repository are each one
sentence from restore, verify and files, with not one byte written to the target; a wrong
passphrase writes nothing; the passphrase is in no process list, log or repository file;
`key change`, `key export` and `key import` work as for an encrypted repository.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit.cli import appliance, file_digest, refused, result_json
from kit.diskcompare import assert_equivalent
from kit.forgery import forge_manifest, rename_first_partition
from kit.loops import Loops
from kit.plaindisk import build_plain_disk
from kit.secretrepo import SecretRepo
from kit.secrets import Watched, files_holding, passphrase_file, run_watching_ps

pytestmark = pytest.mark.root

PASSPHRASE = "Green-Meadow kettle 4 softly"
NOT_SIGNED = "The image pc is not signed by this repository's key"


@dataclass(kw_only=True)
class Keyed(SecretRepo):
    plain: Path  # the same repository before `key add`
    key_add: Watched
    save: Watched


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyed]:
    folder = tmp_path_factory.mktemp("keyed")
    loops = Loops(folder)
    log = folder / "appliance.log"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APPLIANCE_LOG", str(log))
        mp.delenv("APPLIANCE_PASSPHRASE", raising=False)
        try:
            source = build_plain_disk(loops, folder / "source.img")
            repo = folder / "repo"
            appliance("save", source, "--repo", str(repo), "--image", "pc", "--create")
            plain = folder / "plain"
            shutil.copytree(repo, plain)
            pass_file = passphrase_file(folder, PASSPHRASE)
            key_add = run_watching_ps(["key", "add", "--repo", str(repo),
                                       "--passphrase-file", str(pass_file)])  # fmt: skip
            assert key_add.returncode == 0, key_add.stderr
            save = run_watching_ps(
                ["save", source, "--repo", str(repo), "--image", "pc-2", "--json",
                 "--passphrase-file", str(pass_file)]
            )  # fmt: skip
            assert save.returncode == 0, save.stderr
            yield Keyed(
                loops=loops,
                folder=folder,
                source=source,
                repo=repo,
                plain=plain,
                pass_file=pass_file,
                log=log,
                key_add=key_add,
                save=save,
            )
        finally:
            loops.cleanup()


def test_key_add_keeps_v1_and_says_what_it_signed(keyed: Keyed) -> None:
    meta = json.loads((keyed.repo / "repo.json").read_text())
    assert meta["version"] == 1 and len(meta["id"]) == 32
    assert meta["authentication"] == {"mac": "blake3-keyed", "key": "key.json"}
    assert (
        "Signed as they are now, their manifests and indexes checked: pc." in keyed.key_add.stdout
    )
    assert "appliance verify" in keyed.key_add.stdout
    for image in ("pc", "pc-2"):
        assert (keyed.repo / "images" / image / "manifest.mac").is_file()
    # nothing else changed: the chunks and the manifest are as the save wrote them
    assert (keyed.repo / "images/pc/manifest.json").read_bytes() == (
        keyed.plain / "images/pc/manifest.json"
    ).read_bytes()
    again = keyed.copy_repo("again")
    args = ["save", keyed.source, "--repo", str(again), "--image", "pc-3", "--json"]
    out = result_json(appliance(*keyed.with_pass(*args)))
    assert out["new_chunks"] == 0  # same chunk names as before the key: dedup goes on


@pytest.mark.parametrize("image", ["pc", "pc-2"])
def test_signed_images_restore_and_verify(keyed: Keyed, image: str) -> None:
    target, _ = keyed.blank(f"target-{image}.img")
    proc = appliance(
        *keyed.with_pass("restore", "--repo", str(keyed.repo), "--image", image, target, "--yes")
    )
    assert "not authenticated" not in proc.stderr
    assert_equivalent(keyed.source, target)
    appliance(
        *keyed.with_pass("verify", "--repo", str(keyed.repo), "--image", image, "--against", target)
    )


def assert_refused_everywhere(keyed: Keyed, repo: Path, words: str) -> None:
    """verify, files and restore each say `words` in one sentence; the target is untouched."""
    for job in (["verify"], ["files", "--partition", "2"]):
        proc = appliance(*keyed.with_pass(*job, "--repo", str(repo), "--image", "pc"), check=False)
        refused(proc, 9, words)
    target, target_file = keyed.blank(f"target-{repo.name}.img")
    before = file_digest(target_file)
    proc = appliance(
        *keyed.with_pass("restore", "--repo", str(repo), "--image", "pc", target, "--yes"),
        check=False,
    )
    sentence = refused(proc, 9, words)
    assert "nothing was written" in sentence
    assert file_digest(target_file) == before


@pytest.mark.parametrize("mac", ["kept", "dropped"])
def test_a_consistent_forgery_is_refused(keyed: Keyed, mac: str) -> None:
    forged_plain = keyed.copy_repo(f"forged-plain-{mac}", keyed.plain)
    forge_manifest(forged_plain / "images" / "pc", rename_first_partition)
    appliance("info", "--repo", str(forged_plain), "--image", "pc")  # no key: it goes unseen
    repo = keyed.copy_repo(f"forged-{mac}")
    forge_manifest(repo / "images" / "pc", rename_first_partition)
    if mac == "dropped":
        (repo / "images" / "pc" / "manifest.mac").unlink()
    assert_refused_everywhere(keyed, repo, NOT_SIGNED)


def test_a_manifest_and_mac_from_another_keyed_repository_are_refused(keyed: Keyed) -> None:
    other = keyed.copy_repo("other", keyed.plain)
    appliance(*keyed.with_pass("key", "add", "--repo", str(other)))  # the same passphrase
    appliance(*keyed.with_pass("info", "--repo", str(other), "--image", "pc"))  # valid there
    repo = keyed.copy_repo("foreign")
    for name in ("manifest.json", "manifest.mac"):  # the same image's bytes, signed there
        shutil.copyfile(other / "images" / "pc" / name, repo / "images" / "pc" / name)
    assert_refused_everywhere(keyed, repo, NOT_SIGNED)


def test_a_wrong_passphrase_writes_nothing(keyed: Keyed) -> None:
    wrong = passphrase_file(keyed.folder, "Green-Meadow kettle 5 softly", "wrong")
    target, target_file = keyed.blank("wrong-target.img")
    before = file_digest(target_file)
    args = ["restore", "--repo", str(keyed.repo), "--image", "pc", target, "--yes"]
    refused(
        appliance(*args, "--passphrase-file", str(wrong), check=False), 6, "passphrase is wrong"
    )
    assert file_digest(target_file) == before
    repo = keyed.copy_repo("wrong-save")
    files = sorted(str(p) for p in repo.rglob("*"))
    proc = appliance("save", keyed.source, "--repo", str(repo), "--image", "x",
                     "--passphrase-file", str(wrong), check=False)  # fmt: skip
    refused(proc, 6, "passphrase is wrong")
    assert sorted(str(p) for p in repo.rglob("*")) == files
    proc = appliance("verify", "--repo", str(repo), "--image", "pc", check=False)
    refused(proc, 6, "has a key that signs its images and no passphrase was given")


def test_the_passphrase_is_nowhere(keyed: Keyed) -> None:
    secret = PASSPHRASE.encode()
    for watched in (keyed.key_add, keyed.save):
        assert watched.ps_lines, "ps saw the job running"
        assert not [line for line in watched.ps_lines if PASSPHRASE in line]
        assert PASSPHRASE not in watched.stdout + watched.stderr
    target, _ = keyed.blank("leak-target.img")
    restore = run_watching_ps(
        keyed.with_pass("restore", "--repo", str(keyed.repo), "--image", "pc", target, "--yes")
    )
    assert restore.returncode == 0, restore.stderr
    assert not [line for line in restore.ps_lines if PASSPHRASE in line]
    assert keyed.log.exists() and secret not in keyed.log.read_bytes()
    assert files_holding(keyed.repo, secret) == []  # repo.json, key.json, manifests, MACs
    assert files_holding(keyed.repo, secret.hex().encode()) == []


def test_key_add_is_refused_where_a_key_exists(keyed: Keyed) -> None:
    before = (keyed.repo / "key.json").read_bytes()
    proc = appliance(*keyed.with_pass("key", "add", "--repo", str(keyed.repo)), check=False)
    refused(proc, 2, "has a key already")
    assert (keyed.repo / "key.json").read_bytes() == before
    encrypted = keyed.folder / "encrypted"
    appliance(*keyed.with_pass("init", "--repo", str(encrypted), "--encrypt"))
    proc = appliance(*keyed.with_pass("key", "add", "--repo", str(encrypted)), check=False)
    refused(proc, 2, "is encrypted, so its images are authenticated already")


def test_key_change_export_and_import(keyed: Keyed) -> None:
    repo = keyed.copy_repo("rekeyed")
    macs = {p: p.read_bytes() for p in repo.rglob("manifest.mac")}
    new = passphrase_file(keyed.folder, "an entirely new passphrase 2026", "new")
    appliance(
        *keyed.with_pass("key", "change", "--repo", str(repo)), "--new-passphrase-file", str(new)
    )
    assert {p: p.read_bytes() for p in repo.rglob("manifest.mac")} == macs  # the same key
    refused(appliance(*keyed.with_pass("images", "--repo", str(repo)), check=False), 6, "wrong")
    paper = keyed.folder / "keyed-paper.txt"
    appliance("key", "export", "--repo", str(repo), "--to", str(paper),
              "--passphrase-file", str(new))  # fmt: skip
    (repo / "key.json").unlink()
    proc = appliance("verify", "--repo", str(repo), "--image", "pc",
                     "--passphrase-file", str(new), check=False)  # fmt: skip
    refused(proc, 6, "appliance key export")
    appliance("key", "import", "--repo", str(repo), str(paper))
    appliance("verify", "--repo", str(repo), "--image", "pc", "--passphrase-file", str(new))


def test_a_repository_without_a_key_says_how_to_add_one(keyed: Keyed) -> None:
    target, _ = keyed.blank("plain-target.img")
    proc = appliance("restore", "--repo", str(keyed.plain), "--image", "pc", target, "--yes")
    notes = [line for line in proc.stderr.splitlines() if "not authenticated" in line]
    assert len(notes) == 1 and "appliance key add --repo" in notes[0], proc.stderr
    proc = appliance("key", "change", "--repo", str(keyed.plain), check=False)
    refused(proc, 2, "appliance key add")


def test_an_image_imported_into_it_is_signed(keyed: Keyed) -> None:
    repo = keyed.copy_repo("importing")
    appliance(*keyed.with_pass("import", "--repo", str(repo), "--from", str(keyed.plain),
                               "--image", "pc", "--as", "moved"))  # fmt: skip
    assert (repo / "images" / "moved" / "manifest.mac").is_file()
    appliance(*keyed.with_pass("verify", "--repo", str(repo), "--image", "moved"))
    forge_manifest(repo / "images" / "moved", rename_first_partition)
    proc = appliance(*keyed.with_pass("info", "--repo", str(repo), "--image", "moved"), check=False)
    refused(proc, 9, "The image moved is not signed by this repository's key")

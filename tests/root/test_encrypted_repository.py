"""Encrypted repositories (format v2) through the real command line, on real loop disks.

A plain GPT disk (FAT32, ext4, swap) is saved into an encrypted repository with the
passphrase in a root-only file; it restores onto a blank disk that then equals the source;
a second save stores nothing new (dedup inside the repository); chunk names and files say
nothing a v1 repository's would; the passphrase appears in no process list, log, manifest or
repository file; a wrong passphrase, a swapped chunk and a manifest from another repository
are each one sentence and never a wrong disk; `key change` rewrites no chunk; `key export`
and `key import` bring back a lost key file; a web server and an S3 bucket hold the same
repository unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit.cli import appliance, chunk_files, file_digest, refused, result_json
from kit.diskcompare import assert_equivalent
from kit.interrupt import has_valid_table
from kit.loops import Loops
from kit.plaindisk import build_plain_disk
from kit.s3server import clear_aws_settings, moto_server
from kit.secretrepo import SecretRepo
from kit.secrets import Watched, files_holding, passphrase_file, run_watching_ps
from kit.webserve import http_server

pytestmark = pytest.mark.root

PASSPHRASE = "Blue-Harbour lantern 7 quietly"


@dataclass(kw_only=True)
class Encrypted(SecretRepo):
    source_file: Path
    save: Watched


@pytest.fixture(scope="module")
def enc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Encrypted]:
    folder = tmp_path_factory.mktemp("encrypted")
    loops = Loops(folder)
    log = folder / "appliance.log"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APPLIANCE_LOG", str(log))
        mp.delenv("APPLIANCE_PASSPHRASE", raising=False)
        try:
            source_file = folder / "source.img"
            source = build_plain_disk(loops, source_file)
            pass_file = passphrase_file(folder, PASSPHRASE)
            repo = folder / "repo"
            appliance("init", "--repo", str(repo), "--encrypt", "--passphrase-file", str(pass_file))
            before = file_digest(source_file)
            save = run_watching_ps(
                ["save", source, "--repo", str(repo), "--image", "pc", "--json",
                 "--passphrase-file", str(pass_file)]
            )  # fmt: skip
            assert save.returncode == 0, save.stderr
            assert file_digest(source_file) == before
            yield Encrypted(
                loops=loops,
                folder=folder,
                source=source,
                source_file=source_file,
                repo=repo,
                pass_file=pass_file,
                log=log,
                save=save,
            )
        finally:
            loops.cleanup()


def test_round_trip_onto_a_blank_disk(enc: Encrypted) -> None:
    target, _ = enc.blank("target.img")
    proc = appliance(
        *enc.with_pass("restore", "--repo", str(enc.repo), "--image", "pc", target, "--yes")
    )
    assert "not authenticated" not in proc.stderr
    assert_equivalent(enc.source, target)
    appliance(
        *enc.with_pass("verify", "--repo", str(enc.repo), "--image", "pc", "--against", target)
    )


def test_a_second_save_stores_nothing_new(enc: Encrypted) -> None:
    repo = enc.copy_repo("dedup")
    before = chunk_files(repo)
    out = result_json(
        appliance(
            *enc.with_pass("save", enc.source, "--repo", str(repo), "--image", "pc-2", "--json")
        )
    )
    assert out["new_chunks"] == 0 and out["reused_chunks"] > 0
    assert chunk_files(repo) == before


def test_names_and_files_say_nothing(enc: Encrypted) -> None:
    plain = enc.folder / "plain-repo"
    appliance("save", enc.source, "--repo", str(plain), "--image", "pc", "--create")
    names, plain_names = chunk_files(enc.repo), chunk_files(plain)
    assert names and plain_names and not names & plain_names  # keyed names: no plain hash
    assert len(names) == len(plain_names)  # the same windows, deduplicated the same way
    manifest = json.loads((plain / "images" / "pc" / "manifest.json").read_text())
    table_id = manifest["table"]["id"].encode()
    image = enc.repo / "images" / "pc"
    for path in [p for p in image.iterdir() if p.name != "log.txt"]:
        assert path.read_bytes()[:4] == b"APSE", path  # sealed
    assert files_holding(enc.repo, table_id) == []  # the disk's GPT id is in no file
    assert files_holding(enc.repo, b"partclone") == []  # nor what the log says
    assert all(line.startswith("~") for line in (image / "log.txt").read_text().splitlines())
    info = appliance(*enc.with_pass("info", "--repo", str(enc.repo), "--image", "pc"))
    assert "save complete" in info.stdout  # the log, opened


def test_the_passphrase_is_nowhere(enc: Encrypted) -> None:
    secret = PASSPHRASE.encode()
    assert enc.save.ps_lines, "ps saw the save running"
    assert not [line for line in enc.save.ps_lines if PASSPHRASE in line]
    assert PASSPHRASE not in enc.save.stdout + enc.save.stderr
    target, _ = enc.blank("leak-target.img")
    restore = run_watching_ps(
        enc.with_pass("restore", "--repo", str(enc.repo), "--image", "pc", target, "--yes")
    )
    assert restore.returncode == 0, restore.stderr
    assert not [line for line in restore.ps_lines if PASSPHRASE in line]
    assert enc.log.exists() and secret not in enc.log.read_bytes()
    assert files_holding(enc.repo, secret) == []  # repository, manifests, image folder
    assert files_holding(enc.repo, secret.hex().encode()) == []


def test_a_wrong_passphrase_writes_nothing(enc: Encrypted) -> None:
    wrong = passphrase_file(enc.folder, "Blue-Harbour lantern 8 quietly", "wrong")
    target, target_file = enc.blank("wrong-target.img")
    before = file_digest(target_file)
    args = ["restore", "--repo", str(enc.repo), "--image", "pc", target, "--yes"]
    proc = appliance(*args, "--passphrase-file", str(wrong), check=False)
    refused(proc, 6, "passphrase is wrong")
    assert file_digest(target_file) == before
    repo = enc.copy_repo("wrong-save")
    files = sorted(str(p) for p in repo.rglob("*"))
    proc = appliance(
        "save", enc.source, "--repo", str(repo), "--image", "x", "--passphrase-file", str(wrong),
        check=False,
    )  # fmt: skip
    refused(proc, 6, "passphrase is wrong")
    assert sorted(str(p) for p in repo.rglob("*")) == files
    env_proc = appliance("images", "--repo", str(repo), check=False)  # no terminal, no file
    refused(env_proc, 6, "APPLIANCE_PASSPHRASE")


def test_a_passphrase_file_others_can_read_is_refused(enc: Encrypted) -> None:
    shared = passphrase_file(enc.folder, PASSPHRASE, "shared")
    shared.chmod(0o644)
    proc = appliance(
        "images", "--repo", str(enc.repo), "--passphrase-file", str(shared), check=False
    )
    sentence = refused(proc, 2, "chmod 600")
    assert PASSPHRASE not in sentence


def test_a_swapped_chunk_is_detected(enc: Encrypted) -> None:
    repo = enc.copy_repo("swapped")
    chunks = sorted(p for p in (repo / "chunks").rglob("*") if p.is_file())
    shutil.copyfile(chunks[1], chunks[0])  # another valid chunk of the same repository
    proc = appliance(*enc.with_pass("verify", "--repo", str(repo), "--image", "pc"), check=False)
    refused(proc, 9, "authentication")
    target, _ = enc.blank("swap-target.img")
    proc = appliance(
        *enc.with_pass("restore", "--repo", str(repo), "--image", "pc", target, "--yes"),
        check=False,
    )
    refused(proc, 9, "authentication")  # the chunk's bytes never reach the disk
    assert not has_valid_table(target)  # the marker stays: never a wrong disk
    appliance(*enc.with_pass("restore", "--repo", str(enc.repo), "--image", "pc", target, "--yes"))
    assert_equivalent(enc.source, target)  # the good repository finishes it


def test_a_manifest_from_another_repository_is_refused(enc: Encrypted) -> None:
    other = enc.folder / "other"
    appliance(*enc.with_pass("init", "--repo", str(other), "--encrypt"))
    appliance(*enc.with_pass("save", enc.source, "--repo", str(other), "--image", "pc"))
    repo = enc.copy_repo("foreign-manifest")
    key = Path("images") / "pc" / "manifest.json"
    shutil.copyfile(other / key, repo / key)  # same passphrase, same disk: still foreign
    for job in (["verify"], ["info"]):
        proc = appliance(*enc.with_pass(*job, "--repo", str(repo), "--image", "pc"), check=False)
        refused(proc, 9, "authentication")
    target, target_file = enc.blank("foreign-target.img")
    before = file_digest(target_file)
    proc = appliance(
        *enc.with_pass("restore", "--repo", str(repo), "--image", "pc", target, "--yes"),
        check=False,
    )
    refused(proc, 9, "authentication")
    assert file_digest(target_file) == before


def test_key_change_rewrites_no_chunk(enc: Encrypted) -> None:
    repo = enc.copy_repo("rekeyed")
    chunks = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (repo / "chunks").rglob("*")
              if p.is_file()}  # fmt: skip
    new = passphrase_file(enc.folder, "a completely new passphrase 2026", "new")
    appliance(
        *enc.with_pass("key", "change", "--repo", str(repo)), "--new-passphrase-file", str(new)
    )
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (repo / "chunks").rglob("*")
             if p.is_file()}  # fmt: skip
    assert after == chunks
    # replaced atomically: no temporary file left (.partial/ is where chunks are written)
    assert not [p for p in repo.iterdir() if p.name.startswith(".") and p.name != ".partial"]
    assert not [p for p in repo.rglob("*") if p.is_file() and p.name.startswith(".")]
    refused(appliance(*enc.with_pass("images", "--repo", str(repo)), check=False), 6, "wrong")
    appliance("verify", "--repo", str(repo), "--image", "pc", "--passphrase-file", str(new))


def test_key_export_and_import_bring_back_a_lost_key(enc: Encrypted) -> None:
    repo = enc.copy_repo("lost-key")
    paper = enc.folder / "paper.txt"
    appliance(*enc.with_pass("key", "export", "--repo", str(repo), "--to", str(paper)))
    assert oct(paper.stat().st_mode & 0o777) == "0o600"
    (repo / "key.json").unlink()
    proc = appliance(*enc.with_pass("verify", "--repo", str(repo), "--image", "pc"), check=False)
    refused(proc, 6, "appliance key export")
    appliance("key", "import", "--repo", str(repo), str(paper))
    appliance(*enc.with_pass("verify", "--repo", str(repo), "--image", "pc"))


def test_a_web_server_serves_it_unchanged(enc: Encrypted) -> None:
    with http_server(enc.repo, enc.folder) as url:
        appliance(*enc.with_pass("verify", "--repo", f"{url}/", "--image", "pc"))
        target, _ = enc.blank("web-target.img")
        appliance(*enc.with_pass("restore", "--repo", f"{url}/", "--image", "pc", target, "--yes"))
    assert_equivalent(enc.source, target)


def test_a_bucket_holds_it_unchanged(enc: Encrypted) -> None:
    repo = "s3://images/secret"
    with pytest.MonkeyPatch.context() as mp, moto_server(enc.folder) as server:
        clear_aws_settings(mp, enc.folder)
        for name, value in server.env().items():
            mp.setenv(name, value)
        server.client().create_bucket(Bucket="images")
        appliance(*enc.with_pass("init", "--repo", repo, "--encrypt"))
        appliance(*enc.with_pass("save", enc.source, "--repo", repo, "--image", "pc"))
        stored = server.objects()
        assert "images/secret/key.json" in stored
        assert not [k for k in stored if k.startswith("images/secret/chunks/")
                    and k.rpartition("/")[2] in chunk_files(enc.repo)]  # fmt: skip
        target, _ = enc.blank("bucket-target.img")
        appliance(*enc.with_pass("restore", "--repo", repo, "--image", "pc", target, "--yes"))
        assert_equivalent(enc.source, target)
        assert os.environ.get("APPLIANCE_PASSPHRASE") is None


def test_files_and_mount_open_it_with_the_passphrase_file(enc: Encrypted) -> None:
    """`files` and a lasting `mount` read the encrypted image: the view's processes get the
    unlocked keys through a pipe, so the passphrase file is read once, by the command."""
    from kit.diskbuild import payload

    listed = result_of_files(enc)
    names = {entry["name"] for entry in listed["entries"]}
    assert "data" in names, listed
    where = enc.folder / "mounted"
    where.mkdir()
    appliance(*enc.with_pass("mount", "--repo", str(enc.repo), "--image", "pc",
                             "--partition", "2", str(where)))  # fmt: skip
    try:
        want = payload(3, "root").keep["data/nested/deep/notes.txt"]
        assert (where / "data/nested/deep/notes.txt").read_bytes() == want
    finally:
        appliance("umount", str(where))
    assert not os.path.ismount(where)
    wrong = enc.folder / "wrong-for-files"
    wrong.write_text("not the passphrase at all\n")
    wrong.chmod(0o600)
    proc = appliance("files", "--repo", str(enc.repo), "--image", "pc", "--partition", "2",
                     "--passphrase-file", str(wrong), check=False)  # fmt: skip
    refused(proc, 6, "passphrase")


def result_of_files(enc: Encrypted) -> dict[str, object]:
    proc = appliance(*enc.with_pass("files", "--repo", str(enc.repo), "--image", "pc",
                                    "--partition", "2", "--json"))  # fmt: skip
    found: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return found

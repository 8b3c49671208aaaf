"""Every changed byte of an encrypted repository is found: more than 200 positions across a
chunk, an index, the manifest and the key file, each flipped in turn, make verify and the
restore's reading (the bytes the write plan would write) stop with a sentence; a few of them
through the real command line onto a real disk, which is never left a wrong disk.

The many flips run in this process (the same engine the command line runs, without a new
process and an argon2id per flip); the key stays unlocked between them, except for the key
file's own flips.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit.cli import appliance, file_digest, refused
from kit.diskbuild import sparse_file
from kit.interrupt import has_valid_table
from kit.loops import Loops
from kit.plaindisk import PLAIN_DISK_SIZE, build_plain_disk
from kit.secrets import passphrase_file

from appliance.errors import ApplianceError, CorruptData
from appliance.io.source import RepositorySource
from appliance.jobs.verify import verify_image
from appliance.repo import keyring
from appliance.repo.image import load_image
from appliance.repo.repository import Repository

pytestmark = pytest.mark.root

PASSPHRASE = "seven brittle anchors 2026"
SAMPLES = {"chunk": 70, "index": 50, "manifest": 50, "key": 40}  # 210 positions


@dataclass
class Damaged:
    loops: Loops
    folder: Path
    source: str
    repo: Path  # a copy the tests flip bytes in (each flip is undone)
    pass_file: Path

    def target(self, name: str) -> tuple[str, Path]:
        path = sparse_file(self.folder, name, PLAIN_DISK_SIZE)
        return self.loops.attach(path), path


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Damaged]:
    folder = tmp_path_factory.mktemp("damage")
    loops = Loops(folder)
    try:
        source = build_plain_disk(loops, folder / "source.img")
        pass_file = passphrase_file(folder, PASSPHRASE)
        repo = folder / "repo"
        opts = ["--passphrase-file", str(pass_file)]
        appliance("init", "--repo", str(repo), "--encrypt", *opts)
        appliance("save", source, "--repo", str(repo), "--image", "pc", *opts)
        yield Damaged(loops, folder, source, repo, pass_file)
    finally:
        loops.cleanup()
        keyring.forget_all()
        keyring.set_passphrase_source(None)


def files_to_flip(repo: Path) -> dict[str, Path]:
    image = repo / "images" / "pc"
    chunks = [p for p in (repo / "chunks").rglob("*") if p.is_file()]
    indexes = sorted(image.glob("*.idx"), key=lambda p: p.stat().st_size)
    return {
        "chunk": max(chunks, key=lambda p: p.stat().st_size),
        "index": indexes[-1],
        "manifest": image / "manifest.json",
        "key": repo / "key.json",
    }


def restore_reads(repo: Path) -> None:
    """What a restore reads before it writes a window: the manifest, each index, then every
    window's chunk, opened and checked (RepositorySource, as the write plan reads it)."""
    source = RepositorySource.from_image(load_image(Repository.open(repo), "pc"))
    for number, index in enumerate(source.indexes):
        for window in range(len(index.chunks)):
            source.read_window(number, window)


def positions(size: int, count: int, seed: int) -> list[int]:
    """`count` positions spread over the whole file: its first and last bytes, then random."""
    edges = {0, 1, 4, 15, 16, 27, 28, size - 16, size - 1}  # header, nonce, body, tag
    rest = random.Random(seed).sample(range(size), min(size, count))
    return sorted({p for p in edges if 0 <= p < size} | set(rest))[:count]


def sentence_of(job: Callable[[], None]) -> str:
    """The job's sentence: it must stop with an ApplianceError of one full line."""
    try:
        job()
    except ApplianceError as exc:
        text = str(exc)
        assert text.endswith(".") and "\n" not in text, text
        return text
    raise AssertionError("a flipped byte went unnoticed")


def test_every_flipped_byte_is_found_by_verify_and_restore(damaged: Damaged) -> None:
    keyring.forget_all()
    keyring.set_passphrase_source(lambda where: PASSPHRASE)
    repo = damaged.repo
    restore_reads(repo)  # whole, it reads
    verify_image(str(repo), "pc")
    checked = 0
    for seed, (kind, path) in enumerate(files_to_flip(repo).items()):
        good = path.read_bytes()
        spots = positions(len(good), SAMPLES[kind], seed)
        assert len(spots) == SAMPLES[kind]
        for spot in spots:
            bad = bytearray(good)
            bad[spot] ^= 1 << (spot % 8)
            path.write_bytes(bytes(bad))
            if kind == "key":
                keyring.forget_all()  # the key file is read again: a new job would
            try:
                said = sentence_of(lambda: verify_image(str(repo), "pc"))
                again = sentence_of(lambda: restore_reads(repo))
            finally:
                path.write_bytes(good)
            for text in (said, again):
                if kind == "key":
                    assert "appliance key export" in text or "passphrase is wrong" in text
                else:
                    assert "authentication" in text or "damaged" in text, text
                if kind == "chunk":
                    assert "It holds data of partition" in text, text
            checked += 1
    assert checked >= 200
    keyring.forget_all()
    verify_image(str(repo), "pc")  # every flip undone: whole again


@pytest.mark.parametrize("kind", ["chunk", "index", "manifest", "key"])
def test_a_flipped_byte_through_the_command_line(damaged: Damaged, kind: str) -> None:
    repo = damaged.folder / f"cli-{kind}"
    shutil.copytree(damaged.repo, repo)
    path = files_to_flip(repo)[kind]
    bad = bytearray(path.read_bytes())
    bad[len(bad) // 2] ^= 0x10
    path.write_bytes(bytes(bad))
    opts = ["--passphrase-file", str(damaged.pass_file)]
    code = 6 if kind == "key" else 9
    proc = appliance("verify", "--repo", str(repo), "--image", "pc", *opts, check=False)
    refused(proc, code, "appliance key export" if kind == "key" else "")
    target, target_file = damaged.target(f"target-{kind}.img")
    before = file_digest(target_file)
    restore = ["restore", "--repo", str(repo), "--image", "pc", target, "--yes", *opts]
    refused(appliance(*restore, check=False), code, "")
    if kind == "chunk":  # found while writing: the marker stays, no table
        assert not has_valid_table(target)
    else:  # found before the first write
        assert file_digest(target_file) == before


def test_a_chunk_sealed_for_another_name_fails(damaged: Damaged) -> None:
    """The name is bound in: a chunk stored under another valid name does not open."""
    keyring.forget_all()
    keyring.set_passphrase_source(lambda where: PASSPHRASE)
    repo = Repository.open(damaged.repo)
    names = sorted(repo.chunk_names())
    blob = repo.store.get(f"chunks/{names[0][:2]}/{names[0][2:4]}/{names[0]}")
    with pytest.raises(CorruptData, match="authentication"):
        repo.open_chunk(names[1], blob)

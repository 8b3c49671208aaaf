"""Format v2's key file and sealed objects (appliance/repo/sealing.py): what opens, what not."""

from __future__ import annotations

import json
import random

import pytest

from appliance.errors import CorruptData
from appliance.repo.chunk import content_hash
from appliance.repo.sealing import (
    DamagedKeyFile,
    Sealer,
    WrongPassphrase,
    pack_key_file,
    read_key_file,
    sealed_header_ok,
    unpack_key_file,
    unwrap_key,
    wrap_key,
)

CHEAP = {"iterations": 1, "memory_kib": 64, "lanes": 1}  # tests only: stored in the file
MASTER = bytes(range(32))
REPO_ID = "0123456789abcdef0123456789abcdef"


def test_key_file_round_trip_and_stored_parameters() -> None:
    blob = wrap_key(MASTER, REPO_ID, "correct horse", CHEAP)
    fields = json.loads(blob)
    assert fields["kdf"]["name"] == "argon2id" and fields["kdf"]["memory_kib"] == 64
    assert fields["cipher"] == "aes-256-gcm" and MASTER.hex() not in blob.decode()
    assert b"correct horse" not in blob
    assert unwrap_key(blob, "correct horse") == (REPO_ID, MASTER)


def test_default_parameters_are_memory_hard() -> None:
    fields = json.loads(wrap_key(MASTER, REPO_ID, "pw"))
    assert fields["kdf"]["memory_kib"] >= 64 * 1024 and fields["kdf"]["iterations"] >= 3


def test_wrong_passphrase() -> None:
    blob = wrap_key(MASTER, REPO_ID, "correct horse", CHEAP)
    with pytest.raises(WrongPassphrase):
        unwrap_key(blob, "correct horsf")


def test_every_flipped_byte_of_a_key_file_is_refused() -> None:
    blob = wrap_key(MASTER, REPO_ID, "pw", CHEAP)
    positions = sorted(random.Random(14).sample(range(len(blob)), min(len(blob), 150)))
    for pos in positions:
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises((DamagedKeyFile, WrongPassphrase)):
            unwrap_key(bytes(bad), "pw")


def test_a_key_file_rewrapped_for_another_repository_id_is_refused() -> None:
    fields = json.loads(wrap_key(MASTER, REPO_ID, "pw", CHEAP))
    fields["repository"] = "f" * 32
    with pytest.raises(DamagedKeyFile):  # its check no longer matches
        read_key_file(json.dumps(fields).encode())


def test_packed_key_file_round_trip() -> None:
    blob = wrap_key(MASTER, REPO_ID, "pw", CHEAP)
    packed = pack_key_file(blob)
    assert len(packed) == 102
    assert unwrap_key(unpack_key_file(packed), "pw") == (REPO_ID, MASTER)
    with pytest.raises(DamagedKeyFile):
        unpack_key_file(packed[:-1])


def test_names_are_keyed_and_dedup_inside_one_repository() -> None:
    data = b"window" * 1000
    one, again, other = Sealer(REPO_ID, MASTER), Sealer(REPO_ID, MASTER), Sealer(REPO_ID, b"k" * 32)
    assert one.name(data) == again.name(data)  # same repository: same name (dedup)
    assert one.name(data) != content_hash(data)  # the plain hash says nothing
    assert one.name(data) != other.name(data)  # another key: another name
    assert one.zero_name(4096) == one.name(bytes(4096)) != content_hash(bytes(4096))


def test_seal_open_and_what_fails() -> None:
    sealer = Sealer(REPO_ID, MASTER)
    key = "chunks/ab/cd/" + "ab" * 32
    blob = sealer.seal(key, b"secret bytes" * 100)
    assert b"secret bytes" not in blob and sealed_header_ok(blob[:16], len(blob))
    assert sealer.open(key, blob, "Chunk x") == b"secret bytes" * 100
    assert sealer.seal(key, b"same") != sealer.seal(key, b"same")  # a fresh nonce each time
    with pytest.raises(CorruptData, match="authentication"):
        sealer.open("chunks/ab/cd/" + "cd" * 32, blob, "Chunk y")  # moved to another name
    with pytest.raises(CorruptData, match="authentication"):
        Sealer("f" * 32, MASTER).open(key, blob, "Chunk x")  # another repository's
    with pytest.raises(CorruptData):
        sealer.open(key, blob[:-1], "Chunk x")  # truncated
    for pos in random.Random(2).sample(range(len(blob)), 60):
        bad = bytearray(blob)
        bad[pos] ^= 0x80
        with pytest.raises(CorruptData):
            sealer.open(key, bytes(bad), "Chunk x")


def test_sealing_into_a_reused_buffer_gives_what_seal_gives() -> None:
    sealer = Sealer(REPO_ID, MASTER)
    key = "chunks/ab/cd/" + "ab" * 32
    out = bytearray(1000)
    first = bytes(sealer.seal_into(key, b"first chunk" * 50, out))
    second = sealer.seal_into(key, b"second" * 20, out)  # the same buffer, shorter
    assert sealer.open(key, first, "Chunk x") == b"first chunk" * 50
    assert sealer.open(key, bytes(second), "Chunk x") == b"second" * 20
    assert len(second) == len(sealer.seal(key, b"second" * 20))
    with pytest.raises(ValueError):
        sealer.seal_into(key, b"too long" * 200, out)

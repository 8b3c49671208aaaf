import os

import pytest

from appliance.errors import CorruptData
from appliance.repo.chunk import HEADER_SIZE, Decoder, Encoder, content_hash, header_ok


@pytest.mark.parametrize("data", [b"\0" * 4096, os.urandom(65536), b"text " * 1000])
def test_round_trip(data: bytes) -> None:
    blob = Encoder().encode(data)
    assert header_ok(blob[:HEADER_SIZE], len(blob))
    assert Decoder().decode(blob, content_hash(data), len(data)) == data


def test_incompressible_is_stored_raw() -> None:
    data = os.urandom(100_000)
    blob = Encoder().encode(data)
    assert len(blob) == len(data) + HEADER_SIZE
    assert blob[HEADER_SIZE:] == data


def test_compressible_is_smaller() -> None:
    data = b"abc" * 100_000
    assert len(Encoder().encode(data)) < len(data) // 10


def damaged(damage: str) -> tuple[bytes, str, bytes]:
    """(the window's bytes, their name, a chunk file of them with `damage` done to it)."""
    data = os.urandom(4096) if damage == "raw-flip" else b"hello world " * 5000
    blob = bytearray(Encoder().encode(data))
    if damage in ("flip", "raw-flip"):
        blob[-5] ^= 0xFF
    elif damage == "truncate":
        del blob[-10:]
    elif damage == "header":
        blob[0:4] = b"XXXX"
    else:
        blob += b"!"
    return data, content_hash(data), bytes(blob)


@pytest.mark.parametrize("damage", ["flip", "truncate", "header", "extra"])
def test_damage_is_caught(damage: str) -> None:
    data, name, blob = damaged(damage)
    with pytest.raises(CorruptData, match=name):
        Decoder().decode(blob, name, len(data))


def test_flip_in_raw_chunk_fails_hash() -> None:
    data = os.urandom(4096)
    blob = bytearray(Encoder().encode(data))
    blob[HEADER_SIZE + 7] ^= 1
    with pytest.raises(CorruptData, match="does not match its hash"):
        Decoder().decode(bytes(blob), content_hash(data), len(data))


@pytest.mark.parametrize("data", [b"\0" * 4096, os.urandom(65536), b"text " * 1000])
def test_decode_into_a_buffer_gives_what_decode_gives(data: bytes) -> None:
    out = bytearray(b"\xee" * 70_000)  # a reused buffer: old bytes in it
    blob = Encoder().encode(data)
    Decoder().decode_into(blob, content_hash(data), len(data), memoryview(out))
    assert bytes(out[: len(data)]) == Decoder().decode(blob, content_hash(data), len(data))
    assert out[len(data) :] == b"\xee" * (70_000 - len(data))  # nothing past the window


@pytest.mark.parametrize("damage", ["flip", "truncate", "header", "extra", "raw-flip"])
def test_decode_into_catches_what_decode_catches(damage: str) -> None:
    data, name, blob = damaged(damage)
    with pytest.raises(CorruptData, match=name):
        Decoder().decode_into(blob, name, len(data), memoryview(bytearray(len(data))))


@pytest.mark.parametrize("told", [-1, +1])
def test_decode_into_refuses_a_frame_of_another_length(told: int) -> None:
    """A frame holding more (or fewer) bytes than the window is damage, never a write past
    the window (or a window half old bytes)."""
    data = b"twelve bytes" * 1000
    out = memoryview(bytearray(len(data) + 10))
    with pytest.raises(CorruptData, match="does not match"):
        Decoder().decode_into(Encoder().encode(data), content_hash(data), len(data) + told, out)


@pytest.mark.parametrize("data", [os.urandom(65536), b"text " * 1000])
def test_encode_parts_joined_is_encode_and_a_raw_payload_is_not_copied(data: bytes) -> None:
    view = memoryview(data)
    header, payload = Encoder().encode_parts(view)
    assert header + bytes(payload) == Encoder().encode(data)
    assert len(header) == HEADER_SIZE
    if len(payload) == len(data):  # stored raw: the caller's own bytes, no copy
        assert payload is view

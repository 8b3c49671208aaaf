"""The MAC of a keyed v1 repository's manifests (repo/signing.py): it binds the repository's
id, the image's name and the manifest's bytes; a flipped byte of any of them, of the MAC
file or of the key fails, with one sentence naming the image."""

from __future__ import annotations

import json

import pytest

from appliance.errors import CorruptData
from appliance.repo.signing import MAC_FILE, Signer, is_keyed, known_authentication, mac_key

REPO_ID = "0123456789abcdef0123456789abcdef"
MASTER = bytes(range(32))
MANIFEST = json.dumps({"name": "pc", "complete": True, "manifest_hash": "ab" * 32}).encode()


def signed() -> bytes:
    return Signer(REPO_ID, MASTER).mac_file("pc", MANIFEST)


def flipped(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def refused(signer: Signer, name: str, manifest: bytes, mac_file: bytes | None) -> None:
    with pytest.raises(CorruptData) as caught:
        signer.check(name, manifest, mac_file)
    sentence = str(caught.value)
    assert f"The image {name} is not signed by this repository's key" in sentence
    assert "nothing was written" in sentence and "\n" not in sentence


def test_a_signed_manifest_passes() -> None:
    Signer(REPO_ID, MASTER).check("pc", MANIFEST, signed())
    fields = json.loads(signed())
    assert fields["format"] == "appliance-manifest-mac" and fields["mac"] == "blake3-keyed"
    assert len(fields["value"]) == 64


def test_every_flipped_byte_of_the_manifest_fails() -> None:
    signer, mac = Signer(REPO_ID, MASTER), signed()
    for position in range(len(MANIFEST)):
        refused(signer, "pc", flipped(MANIFEST, position), mac)


def test_a_flipped_byte_of_the_name_or_the_id_fails() -> None:
    mac = signed()
    refused(Signer(REPO_ID, MASTER), "pd", MANIFEST, mac)  # another image's folder
    for position in range(len(REPO_ID)):
        other = flipped(REPO_ID.encode(), position).decode()
        refused(Signer(other, MASTER), "pc", MANIFEST, mac)  # another repository


def test_every_flipped_byte_of_the_mac_fails() -> None:
    signer, mac = Signer(REPO_ID, MASTER), signed()
    value_at = mac.index(json.loads(mac)["value"].encode())
    for position in range(value_at, value_at + 64):
        refused(signer, "pc", MANIFEST, flipped(mac, position))


def test_another_master_key_fails() -> None:
    refused(Signer(REPO_ID, flipped(MASTER, 7)), "pc", MANIFEST, signed())


@pytest.mark.parametrize(
    "mac_file",
    [None, b"", b"{", b"[]", b'{"format": "appliance-manifest-mac"}', b"\xff\xfe",
     b'{"format": "appliance-manifest-mac", "mac": "blake3-keyed", "value": "\\u00e9"}'],
)  # fmt: skip
def test_a_missing_or_garbled_mac_file_fails(mac_file: bytes | None) -> None:
    refused(Signer(REPO_ID, MASTER), "pc", MANIFEST, mac_file)


def test_the_mac_is_not_the_plain_hash_nor_a_v2_key() -> None:
    import blake3

    value = json.loads(signed())["value"]
    assert value != blake3.blake3(MANIFEST).hexdigest()
    assert value != blake3.blake3(MANIFEST, key=MASTER).hexdigest()  # a subkey, not the master


def test_only_a_manifest_gets_a_signature() -> None:
    signer = Signer(REPO_ID, MASTER)
    found = signer.signature("images/pc/manifest.json", MANIFEST)
    assert found == (mac_key("pc"), signed()) and found[0] == f"images/pc/{MAC_FILE}"
    for key in ("images/pc/p1.idx", "images/pc/verified.json", "repo.json", "images/manifest.json"):
        assert signer.signature(key, MANIFEST) is None


def test_repo_json_says_whether_a_key_signs() -> None:
    assert not is_keyed({"version": 1})
    keyed = {"version": 1, "authentication": {"mac": "blake3-keyed", "key": "key.json"}}
    assert is_keyed(keyed) and known_authentication(keyed)
    assert not known_authentication({"version": 1, "authentication": {"mac": "hmac-sha3"}})

"""Signed manifests: an unencrypted repository (format v1) whose key authenticates its images.

`appliance key add` gives a v1 repository the same key file as an encrypted one (key.json:
a random master key wrapped by the passphrase, repo/sealing.py) and adds to its repo.json,
which stays version 1 so that an older appliance still reads it:

  id              16 random bytes, hex (as format v2 has)
  authentication  {"mac": "blake3-keyed", "key": "key.json"}

Nothing is encrypted. Beside each image's manifest.json, manifest.mac holds

  {"format": "appliance-manifest-mac", "version": 1, "mac": "blake3-keyed", "value": HEX}

where HEX is blake3 in keyed mode, with a subkey blake3 derives from the master key (a
context of its own: never one of format v2's keys), of the repository's id, the image's name
and the manifest's bytes exactly as stored. A chunk's name is the blake3 of its content, an
index lists chunk names, and the manifest holds each index's hash, so the MAC authenticates
the whole image: a forger who edits a manifest can recompute its manifest_hash, not its MAC;
a manifest and MAC copied from another repository (another id) or from another image
(another name) fail too. An older appliance ignores the file.
"""

from __future__ import annotations

import hmac
import json
import struct
from typing import Any

import blake3

from appliance.errors import CorruptData, RepositoryError
from appliance.repo.keyring import unlock
from appliance.repo.sealing import KEY_FILE
from appliance.repo.store import Store

MAC_CONTEXT = "appliance 2026-12 repository v1 manifest mac"
MAC_FORMAT = "appliance-manifest-mac"
MAC_NAME = "blake3-keyed"
MANIFEST = "manifest.json"
MAC_FILE = "manifest.mac"
AUTHENTICATION = {"mac": MAC_NAME, "key": KEY_FILE}  # repo.json's field
_LENGTH = struct.Struct("<I")


def is_keyed(meta: dict[str, Any]) -> bool:
    """A version-1 repo.json that says a key signs the repository's manifests."""
    return "authentication" in meta


def known_authentication(meta: dict[str, Any]) -> bool:
    """The repo.json's authentication is one this appliance checks."""
    found = meta.get("authentication")
    return isinstance(found, dict) and found.get("mac") == MAC_NAME


def unlock_signer(store: Store, meta: dict[str, Any], repo_id: str) -> Signer:
    """The signer of the keyed v1 repository in `store` (its passphrase asked, as for v2)."""
    if not known_authentication(meta):
        raise RepositoryError(
            f"The repository at {store.where} is signed in a way this appliance does not "
            "know; use a newer appliance."
        )
    return Signer(repo_id, unlock(store, repo_id, "has a key that signs its images").master)


def not_signed(image: str) -> CorruptData:
    """The one sentence for a manifest whose MAC is missing or wrong."""
    return CorruptData(
        f"The image {image} is not signed by this repository's key: it was changed after it "
        "was saved, or copied in from another repository; nothing was written."
    )


class Signer:
    """The MAC key of one unlocked keyed v1 repository: signs and checks its manifests."""

    def __init__(self, repository: str, master: bytes) -> None:
        self.repository = repository
        self.master = master
        self._key = blake3.blake3(master, derive_key_context=MAC_CONTEXT).digest()

    def mac(self, image: str, manifest: bytes) -> str:
        """The MAC of image `image`'s manifest bytes in this repository (64 hex digits)."""
        mac = blake3.blake3(key=self._key)
        for part in (self.repository.encode(), image.encode()):
            mac.update(_LENGTH.pack(len(part)))
            mac.update(part)
        mac.update(manifest)
        return mac.hexdigest()

    def mac_file(self, image: str, manifest: bytes) -> bytes:
        """The bytes of manifest.mac for these manifest bytes."""
        fields = {
            "format": MAC_FORMAT,
            "version": 1,
            "mac": MAC_NAME,
            "value": self.mac(image, manifest),
        }
        return (json.dumps(fields, indent=2) + "\n").encode()

    def signature(self, key: str, data: bytes) -> tuple[str, bytes] | None:
        """(key, bytes) of the MAC file to write after the file `key` ("images/NAME/...")
        holding `data`; None when that file is not a manifest."""
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != "images" or parts[2] != MANIFEST:
            return None
        return f"images/{parts[1]}/{MAC_FILE}", self.mac_file(parts[1], data)

    def check(self, image: str, manifest: bytes, mac_file: bytes | None) -> None:
        """Nothing when `mac_file` (None: there is none) signs these manifest bytes;
        CorruptData naming the image otherwise."""
        if mac_file is None or not hmac.compare_digest(
            _recorded(mac_file), self.mac(image, manifest).encode()
        ):
            raise not_signed(image)


def _recorded(mac_file: bytes) -> bytes:
    """The MAC a manifest.mac holds, as ASCII bytes (b"" when it holds none)."""
    try:
        fields = json.loads(mac_file)
    except (ValueError, UnicodeDecodeError):
        return b""
    if not isinstance(fields, dict) or fields.get("format") != MAC_FORMAT:
        return b""
    value = fields.get("value")
    if fields.get("mac") != MAC_NAME or not isinstance(value, str) or not value.isascii():
        return b""
    return value.encode()


def mac_key(image: str) -> str:
    """The key of an image's MAC file."""
    return f"images/{image}/{MAC_FILE}"

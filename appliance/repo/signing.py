"""Signed manifests: an unencrypted repository (format v1) whose key authenticates its images.

`appliance key add` gives a v1 repository the same key file as an encrypted one (key.json:
a random master key wrapped by the passphrase, repo/sealing.py) and adds to its repo.json,
which stays version 1 so that an older appliance still reads it:

  id              16 random bytes, hex (as format v2 has)
  authentication  {"mac": "blake3-keyed", "key": "key.json"}

Nothing is encrypted. Beside each image's manifest.json, manifest.mac holds

  {"format": "appliance-manifest-mac", "version": 1, "mac": "blake3-keyed", "value": HEX}

(and, only while a new manifest replaces an old one, "previous": the old manifest's MAC).

where HEX is blake3 in keyed mode, with a subkey blake3 derives from the master key (a
context of its own: never one of format v2's keys), of the repository's id, the image's name
and the manifest's bytes exactly as stored. A chunk's name is the blake3 of its content, an
index lists chunk names, and the manifest holds each index's hash, so the MAC authenticates
the whole image: a forger who edits a manifest can recompute its manifest_hash, not its MAC;
a manifest and MAC copied from another repository (another id) or from another image
(another name) fail too. An older appliance ignores the file.

A new manifest is written in three durable steps, so that a power cut between any two leaves
a manifest whose MAC is in the file: the MAC file with the new MAC and the old one as
"previous", then the manifest, then the MAC file with the new MAC alone. (A manifest is
rewritten by its own save only: from "incomplete" to "complete", or by a resume.)
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

    def mac_file(self, image: str, manifest: bytes, previous: str | None = None) -> bytes:
        """The bytes of manifest.mac for these manifest bytes (and, while they replace an
        older manifest, that one's MAC as `previous`)."""
        fields = {
            "format": MAC_FORMAT,
            "version": 1,
            "mac": MAC_NAME,
            "value": self.mac(image, manifest),
        }
        if previous:
            fields["previous"] = previous
        return (json.dumps(fields, indent=2) + "\n").encode()

    def signature(self, key: str, data: bytes) -> tuple[str, bytes] | None:
        """(key, bytes) of the MAC file of the file `key` ("images/NAME/...") holding
        `data`; None when that file is not a manifest."""
        image = manifest_image(key)
        if image is None:
            return None
        return mac_key(image), self.mac_file(image, data)

    def write(self, store: Store, key: str, data: bytes) -> None:
        """Put the manifest `key` durably with its MAC, in the three steps the module
        describes (a power cut between any two leaves a signed manifest)."""
        image = manifest_image(key)
        assert image is not None
        previous = self._on_disk(store, image)
        store.put(mac_key(image), self.mac_file(image, data, previous), durable=True)
        store.put(key, data, durable=True)
        if previous is not None:
            store.put(mac_key(image), self.mac_file(image, data), durable=True)

    def _on_disk(self, store: Store, image: str) -> str | None:
        """The MAC of the image's manifest as stored now, when its MAC file signs it."""
        try:
            manifest = store.get(f"images/{image}/{MANIFEST}")
            mac_file = store.get(mac_key(image))
        except FileNotFoundError:
            return None
        mac = self.mac(image, manifest)
        return mac if mac.encode() in recorded(mac_file) else None

    def check(self, image: str, manifest: bytes, mac_file: bytes | None) -> None:
        """Nothing when `mac_file` (None: there is none) signs these manifest bytes (its
        MAC, or the previous one of a replacement a power cut stopped); CorruptData naming
        the image otherwise."""
        mac = self.mac(image, manifest).encode()
        found = recorded(mac_file) if mac_file is not None else []
        if not any(hmac.compare_digest(value, mac) for value in found):
            raise not_signed(image)


def manifest_image(key: str) -> str | None:
    """The image whose manifest the store key `key` is ("images/NAME/manifest.json")."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "images" or parts[2] != MANIFEST:
        return None
    return parts[1]


def recorded(mac_file: bytes) -> list[bytes]:
    """The MACs a manifest.mac holds ("value", then "previous"), as ASCII bytes ([] when it
    holds none)."""
    try:
        fields = json.loads(mac_file)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(fields, dict) or fields.get("format") != MAC_FORMAT:
        return []
    if fields.get("mac") != MAC_NAME:
        return []
    values = [fields.get("value"), fields.get("previous")]
    return [v.encode() for v in values if isinstance(v, str) and v and v.isascii()]


def mac_key(image: str) -> str:
    """The key of an image's MAC file."""
    return f"images/{image}/{MAC_FILE}"

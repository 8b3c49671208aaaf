"""Encryption of a format-v2 repository: its key file, and every object sealed with AES-GCM.

key.json (JSON, beside repo.json):
  format "appliance-key", version 1, repository (the repository's id, as in repo.json),
  kdf {name "argon2id", salt (hex), iterations, memory_kib, lanes}, cipher "aes-256-gcm",
  nonce (hex), wrapped (hex: the 32-byte master key, encrypted and authenticated by the key
  the passphrase gives through argon2id; every other field is its associated data), and
  check (blake3 of the other fields: tells a damaged file from a wrong passphrase).

From the master key, blake3's key derivation makes two subkeys: one names chunks (blake3 in
keyed mode, so a name says nothing of the content and nobody without the key can make one),
one seals objects. A sealed object is

  header (16 bytes: magic b"APSE", version 2, kind, 2 zero bytes, length of the rest)
  nonce (12 random bytes) + AES-256-GCM ciphertext and tag

with the header, the repository's id and the object's key ("chunks/ab/cd/<name>",
"images/NAME/manifest.json") as associated data: an object moved to another name, or copied
from another repository, fails its check. The library is `cryptography` (never our own).
"""

from __future__ import annotations

import json
import os
import struct
from typing import TYPE_CHECKING, Any

import blake3

from appliance.errors import CorruptData

if TYPE_CHECKING:  # cryptography (20 ms to load) only when a repository is encrypted
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE = "key.json"
KEY_FORMAT = "appliance-key"
CIPHER = "aes-256-gcm"
MAGIC = b"APSE"
SEALED_VERSION = 2
HEADER = struct.Struct("<4sBBxxQ")
HEADER_SIZE = HEADER.size  # 16
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = HEADER_SIZE + NONCE_SIZE + TAG_SIZE
CHUNK, FILE = 0, 1  # the header's kind byte
# RFC 9106's second recommended setting: 64 MiB, 3 passes, 4 lanes (about half a second)
KDF_DEFAULTS = {"iterations": 3, "memory_kib": 64 * 1024, "lanes": 4}
NAMES_CONTEXT = "appliance 2026-12 repository v2 chunk names"
SEAL_CONTEXT = "appliance 2026-12 repository v2 aes-256-gcm"


class WrongPassphrase(Exception):
    """The passphrase does not unwrap the key (the caller says so in a sentence)."""


class DamagedKeyFile(Exception):
    """The key file is not one this appliance wrote, or was changed."""


def new_repository_id() -> str:
    return os.urandom(16).hex()


def _aead(key: bytes) -> AESGCM:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _derive(passphrase: str, kdf: dict[str, Any]) -> bytes:
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    return Argon2id(
        salt=bytes.fromhex(kdf["salt"]),
        length=32,
        iterations=int(kdf["iterations"]),
        lanes=int(kdf["lanes"]),
        memory_cost=int(kdf["memory_kib"]),
    ).derive(passphrase.encode("utf-8"))


def _canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _wrap_aad(fields: dict[str, Any]) -> bytes:
    bound = {k: fields[k] for k in ("format", "version", "repository", "kdf", "cipher")}
    return b"appliance-key\0" + _canonical(bound)


def wrap_key(
    master: bytes, repository: str, passphrase: str, kdf: dict[str, int] | None = None
) -> bytes:
    """The key file's bytes: `master` wrapped by `passphrase` (fresh salt and nonce)."""
    params: dict[str, Any] = {"name": "argon2id", "salt": os.urandom(16).hex()}
    params.update(kdf or KDF_DEFAULTS)
    fields: dict[str, Any] = {
        "format": KEY_FORMAT,
        "version": 1,
        "repository": repository,
        "kdf": params,
        "cipher": CIPHER,
    }
    nonce = os.urandom(NONCE_SIZE)
    wrapped = _aead(_derive(passphrase, params)).encrypt(nonce, master, _wrap_aad(fields))
    fields["nonce"] = nonce.hex()
    fields["wrapped"] = wrapped.hex()
    return _key_file(fields)


def _key_file(fields: dict[str, Any]) -> bytes:
    fields = {k: v for k, v in fields.items() if k != "check"}
    fields["check"] = blake3.blake3(_canonical(fields)).hexdigest()
    return (json.dumps(fields, indent=2) + "\n").encode()


PACKED = struct.Struct("<B16s16sIIB12s48s")  # a key file's facts in 102 bytes


def pack_key_file(blob: bytes) -> bytes:
    """The facts of a (checked) key file, packed small for a paper copy."""
    fields = read_key_file(blob)
    kdf = fields["kdf"]
    return PACKED.pack(
        1,
        bytes.fromhex(fields["repository"]),
        bytes.fromhex(kdf["salt"]),
        int(kdf["iterations"]),
        int(kdf["memory_kib"]),
        int(kdf["lanes"]),
        bytes.fromhex(fields["nonce"]),
        bytes.fromhex(fields["wrapped"]),
    )


def unpack_key_file(data: bytes) -> bytes:
    """The key file that `pack_key_file` packed; DamagedKeyFile when it is not one."""
    if len(data) != PACKED.size or data[0] != 1:
        raise DamagedKeyFile
    _, repo, salt, iterations, memory, lanes, nonce, wrapped = PACKED.unpack(data)
    fields: dict[str, Any] = {
        "format": KEY_FORMAT,
        "version": 1,
        "repository": repo.hex(),
        "kdf": {
            "name": "argon2id",
            "salt": salt.hex(),
            "iterations": iterations,
            "memory_kib": memory,
            "lanes": lanes,
        },
        "cipher": CIPHER,
        "nonce": nonce.hex(),
        "wrapped": wrapped.hex(),
    }
    return _key_file(fields)


def read_key_file(blob: bytes) -> dict[str, Any]:
    """The key file's fields, checked for damage (not for the passphrase)."""
    try:
        fields = json.loads(blob)
        if not isinstance(fields, dict) or fields.get("format") != KEY_FORMAT:
            raise DamagedKeyFile
        rest = {k: v for k, v in fields.items() if k != "check"}
        if blake3.blake3(_canonical(rest)).hexdigest() != fields.get("check"):
            raise DamagedKeyFile
        kdf = fields["kdf"]
        if fields["version"] != 1 or fields["cipher"] != CIPHER or kdf["name"] != "argon2id":
            raise DamagedKeyFile
        bytes.fromhex(fields["nonce"]), bytes.fromhex(fields["wrapped"]), bytes.fromhex(kdf["salt"])
        if not isinstance(fields["repository"], str):
            raise DamagedKeyFile
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise DamagedKeyFile from exc
    return fields


def unwrap_key(blob: bytes, passphrase: str) -> tuple[str, bytes]:
    """(repository id, master key) from a key file's bytes; WrongPassphrase or DamagedKeyFile."""
    from cryptography.exceptions import InvalidTag

    fields = read_key_file(blob)
    try:
        master = _aead(_derive(passphrase, fields["kdf"])).decrypt(
            bytes.fromhex(fields["nonce"]), bytes.fromhex(fields["wrapped"]), _wrap_aad(fields)
        )
    except InvalidTag as exc:
        raise WrongPassphrase from exc
    except (ValueError, TypeError) as exc:  # parameters argon2 refuses
        raise DamagedKeyFile from exc
    if len(master) != 32:
        raise DamagedKeyFile
    return str(fields["repository"]), master


class Sealer:
    """The keys of one unlocked repository: names chunks, seals and opens its objects."""

    def __init__(self, repository: str, master: bytes) -> None:
        self.repository = repository
        self.master = master
        self._names = blake3.blake3(master, derive_key_context=NAMES_CONTEXT).digest()
        self._aead = _aead(blake3.blake3(master, derive_key_context=SEAL_CONTEXT).digest())
        from cryptography.exceptions import InvalidTag

        self._invalid_tag = InvalidTag
        self._zeros: dict[int, str] = {}

    def name(self, data: bytes | memoryview) -> str:
        """A chunk's name: blake3 keyed with the names subkey, 64 hex digits."""
        return blake3.blake3(data, key=self._names).hexdigest()

    def zero_name(self, length: int) -> str:
        """The name a window of `length` zero bytes has (never stored)."""
        name = self._zeros.get(length)
        if name is None:
            name = self._zeros[length] = self.name(bytes(length))
        return name

    def _aad(self, header: bytes, key: str) -> bytes:
        return b"%s\0%s\0%s" % (header, self.repository.encode(), key.encode())

    def seal(self, key: str, data: bytes | memoryview, kind: int = FILE) -> bytes:
        """`data` encrypted and bound to `key` in this repository."""
        return bytes(self.seal_into(key, data, bytearray(len(data) + OVERHEAD), kind))

    def seal_into(
        self, key: str, data: bytes | memoryview, out: bytearray, kind: int = FILE
    ) -> memoryview:
        """`seal`, written into `out` (at least len(data) + OVERHEAD bytes): the sealed bytes,
        a view of `out`. A buffer reused for every chunk of a save costs no fresh memory per
        chunk (page faults and copies were most of what encryption added to a save)."""
        total = len(data) + OVERHEAD
        if len(out) < total:
            raise ValueError("the buffer is too small for the sealed object")
        header = HEADER.pack(MAGIC, SEALED_VERSION, kind, total - HEADER_SIZE)
        nonce = os.urandom(NONCE_SIZE)
        view = memoryview(out)
        view[:HEADER_SIZE] = header
        view[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE] = nonce
        self._aead.encrypt_into(
            nonce, data, self._aad(header, key), view[HEADER_SIZE + NONCE_SIZE : total]
        )
        return view[:total]

    def open(self, key: str, blob: bytes, what: str) -> bytes:
        """The bytes sealed under `key`; CorruptData naming `what` when they fail the check."""
        if not sealed_header_ok(blob[:HEADER_SIZE], len(blob)):
            raise CorruptData(f"{what} is damaged (its sealed header or length is wrong).")
        header = blob[:HEADER_SIZE]
        nonce = blob[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE]
        try:
            plain = self._aead.decrypt(
                nonce, memoryview(blob)[HEADER_SIZE + NONCE_SIZE :], self._aad(header, key)
            )
        except self._invalid_tag as exc:
            raise CorruptData(
                f"{what} fails its authentication check: it was changed, or it does not "
                "belong there."
            ) from exc
        assert isinstance(plain, bytes)
        return plain


def sealed_header_ok(head: bytes, file_size: int) -> bool:
    """Cheap check that a sealed object is whole: its header and length agree."""
    if len(head) < HEADER_SIZE or file_size < OVERHEAD:
        return False
    magic, version, kind, length = HEADER.unpack_from(head)
    return (
        magic == MAGIC
        and version == SEALED_VERSION
        and kind in (CHUNK, FILE)
        and length == file_size - HEADER_SIZE
    )

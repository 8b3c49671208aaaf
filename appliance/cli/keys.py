"""Keys on the command line: `appliance init`, `appliance key ...` (an encrypted repository's
key, or the key `key add` gives an unencrypted one to sign its images), and where a
passphrase comes from.

A passphrase is asked on the terminal without echo (twice when it is new), or read from a
root-only file (--passphrase-file; unattended: appliance.passphrase_file=PARTITION:/FILE), or
taken from APPLIANCE_PASSPHRASE for scripts; never from the command line, never logged.
A wrong one is a RepositoryError (exit code 6): one sentence, nothing read or written.

`appliance key export` prints the key file as lines of base32 groups, each line with a
two-letter check, so a paper copy can be typed back with `appliance key import` (a typing
mistake names its line).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import stat
import sys
from pathlib import Path

import blake3

from appliance.errors import RepositoryError, UsageError
from appliance.repo import keyring
from appliance.repo.keyring import MIN_LENGTH, strength
from appliance.repo.newrepo import add_key, initialise, refuse_key
from appliance.repo.places import check_writable
from appliance.repo.repository import (
    ENCRYPTED,
    MARKER,
    VERSION,
    Repository,
    open_store,
    storage_error,
)
from appliance.repo.sealing import (
    KEY_FILE,
    DamagedKeyFile,
    pack_key_file,
    read_key_file,
    unpack_key_file,
    wrap_key,
)
from appliance.repo.signing import is_keyed
from appliance.repo.store import Store

GROUP = 5
GROUPS_PER_LINE = 6
EXPORT_TITLE = "appliance repository key"


def read_passphrase_file(path: Path) -> str:
    """The passphrase in `path` (its first line), once the file is known to be private."""
    try:
        info = path.stat()
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UsageError(
                f"The passphrase file {path} can be read or changed by other users; "
                f"make it private with `chmod 600 {path}`."
            )
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"The passphrase file {path} cannot be read ({exc.strerror}).") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"The passphrase file {path} is not UTF-8 text.") from exc
    passphrase = text.splitlines()[0] if text else ""
    if not passphrase:
        raise UsageError(f"The passphrase file {path} is empty.")
    return passphrase


def ask(prompt: str) -> str | None:
    """A passphrase typed on the terminal, not shown; None without a terminal."""
    if not sys.stdin.isatty():
        return None
    return getpass.getpass(prompt)


def install(args: argparse.Namespace) -> None:
    """Where this command's passphrase comes from: its --passphrase-file, else the terminal
    (else APPLIANCE_PASSPHRASE, see repo/keyring.py)."""
    path = getattr(args, "passphrase_file", None)
    if isinstance(path, Path):
        passphrase = read_passphrase_file(path)
        keyring.set_passphrase_source(lambda where: passphrase)
        return
    if os.environ.get(keyring.ENV_PASSPHRASE):
        keyring.set_passphrase_source(None)
        return
    keyring.set_passphrase_source(lambda where: ask(f"Passphrase of the repository at {where}: "))


def new_passphrase(args: argparse.Namespace, attr: str = "passphrase_file") -> str:
    """A new passphrase: from the file the option names, the environment, or typed twice."""
    path = getattr(args, attr, None)
    if isinstance(path, Path):
        return read_passphrase_file(path)
    env = os.environ.get(keyring.ENV_PASSPHRASE) if attr == "passphrase_file" else None
    if env:
        return env
    first = ask("New passphrase: ")
    if first is None:
        raise UsageError(
            "A new passphrase is needed and there is no terminal to ask on; give it with "
            "--passphrase-file FILE (or APPLIANCE_PASSPHRASE)."
        )
    if first != ask("The same passphrase again: "):
        raise UsageError("The two passphrases differ; nothing was written.")
    if not first:
        raise UsageError("The passphrase is empty; nothing was written.")
    if strength(first) == "weak":
        print(
            f"appliance: this passphrase is weak (use at least {MIN_LENGTH} characters, "
            "several words or kinds of characters).",
            file=sys.stderr,
        )
    return first


def run_init(args: argparse.Namespace) -> int:
    passphrase = new_passphrase(args) if args.encrypt else None
    repo = initialise(args.repo, passphrase=passphrase)
    if args.json:
        print(json.dumps({"repo": repo.where, "version": repo.meta["version"]}))
        return 0
    if repo.encrypted:
        print(
            f"Made an encrypted repository at {repo.where}. Keep a copy of its key: "
            f"appliance key export --repo {args.repo} --to FILE"
        )
    else:
        print(f"Made a repository at {repo.where}.")
    return 0


def encode_export(blob: bytes) -> str:
    """The key file as typed lines: base32 groups and a check of two letters per line."""
    text = base64.b32encode(pack_key_file(blob)).decode().rstrip("=")
    width = GROUP * GROUPS_PER_LINE
    lines = [f"# {EXPORT_TITLE} (type it back with `appliance key import`)"]
    for number, start in enumerate(range(0, len(text), width), 1):
        part = text[start : start + width]
        groups = " ".join(part[i : i + GROUP] for i in range(0, len(part), GROUP))
        lines.append(f"{number:02d}  {groups}  {_line_check(number, part)}")
    return "\n".join(lines) + "\n"


def _line_check(number: int, part: str) -> str:
    digest = blake3.blake3(f"{number}:{part}".encode()).digest()
    return base64.b32encode(digest[:2]).decode()[:2]


def decode_export(text: str, where: str) -> bytes:
    """The key file back from typed lines; UsageError naming a mistyped line."""
    parts: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.upper().split()
        if len(words) < 3 or not words[0].isdigit():
            raise UsageError(f"{where}: the line {raw.strip()!r} is not a line of a key backup.")
        number, part, check = int(words[0]), "".join(words[1:-1]), words[-1]
        if number != len(parts) + 1 or _line_check(number, part) != check:
            raise UsageError(f"{where}: line {words[0]} is mistyped or out of order.")
        parts.append(part)
    text32 = "".join(parts)
    try:
        return unpack_key_file(base64.b32decode(text32 + "=" * (-len(text32) % 8)))
    except (ValueError, DamagedKeyFile) as exc:
        raise UsageError(f"{where} does not hold a whole key backup.") from exc


def run_key(args: argparse.Namespace) -> int:
    if args.action == "import":
        return _import(args)
    if args.action == "add":
        return _add(args)
    repo = Repository.open(args.repo)  # unlocks: the passphrase is proven first
    keys = repo.sealer or repo.signer
    if keys is None:
        raise UsageError(
            f"The repository at {repo.where} is not encrypted and has no key; "
            f"`appliance key add --repo {args.repo}` gives it one."
        )
    if args.action == "change":
        passphrase = new_passphrase(args, "new_passphrase_file")
        blob = wrap_key(keys.master, keys.repository, passphrase)
        try:  # one atomic replace (a folder: write, fsync, rename; a bucket: one PUT)
            repo.store.put(KEY_FILE, blob, durable=True)
        except OSError as exc:
            raise storage_error(repo.where, exc) from exc
        print(f"The passphrase of the repository at {repo.where} is changed; no chunk changed.")
        return 0
    text = encode_export(repo.store.get(KEY_FILE))
    if args.to is None:
        sys.stdout.write(text)
        return 0
    try:
        fd = os.open(args.to, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{args.to} exists already; name a new file.") from None
    except OSError as exc:
        raise UsageError(f"{args.to} cannot be written ({exc.strerror}).") from exc
    with os.fdopen(fd, "w") as out:
        out.write(text)
    print(f"The key of the repository at {repo.where} is in {args.to}; print it, keep it safe.")
    return 0


def _repo_json(store: Store) -> dict[str, object]:
    try:
        meta = json.loads(store.get(MARKER))
    except (OSError, ValueError) as exc:
        raise RepositoryError(f"There is no readable repository at {store.where}.") from exc
    if not isinstance(meta, dict):
        raise RepositoryError(f"There is no readable repository at {store.where}.")
    return meta


def _add(args: argparse.Namespace) -> int:
    """`appliance key add`: a key that signs the images of an unencrypted repository."""
    store = check_writable(open_store(args.repo), "key add")
    refuse_key(store.where, _repo_json(store))  # before any passphrase is asked
    repo = Repository.in_store(store)
    passphrase = new_passphrase(args)
    with repo.lock("key add"):
        signed = add_key(repo, passphrase)
    done = [s.name for s in signed if s.complete]
    unfinished = [s.name for s in signed if not s.complete]
    print(
        f"The repository at {repo.where} has a key now: it signs every image saved there "
        "(the repository stays format v1, so older appliances still read it, without the "
        "check)."
    )
    if done:
        print(f"Signed as they are now, their manifests and indexes checked: {', '.join(done)}.")
        print(f"`appliance verify --repo {args.repo} --image NAME` proves their chunks.")
    if unfinished:
        print(f"Also signed, so that `save --resume` can go on: {', '.join(unfinished)}.")
    print(f"Keep a copy of the key: appliance key export --repo {args.repo} --to FILE")
    return 0


def _import(args: argparse.Namespace) -> int:
    source = "standard input" if args.file == "-" else args.file
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"The key backup {source} cannot be read.") from exc
    blob = decode_export(text, source)
    store = open_store(args.repo)
    meta = _repo_json(store)
    keyed = meta.get("version") == VERSION and is_keyed(meta)
    if meta.get("version") != ENCRYPTED and not keyed:
        raise UsageError(
            f"The repository at {store.where} is not encrypted and has no key; it takes none "
            f"(`appliance key add --repo {args.repo}` gives it a new one)."
        )
    if read_key_file(blob)["repository"] != meta.get("id"):
        raise UsageError(f"The key backup {source} is the key of another repository.")
    try:
        store.put(KEY_FILE, blob, durable=True)
    except OSError as exc:
        raise storage_error(store.where, exc) from exc
    print(f"The key file of the repository at {store.where} is back.")
    return 0

"""Where the passphrase of an encrypted repository (or of a v1 repository with a key, whose
key signs its manifests: repo/signing.py) comes from, and the keys already unlocked.

The front end says how a passphrase is found (`set_passphrase_source`: a file, a prompt on
the terminal, a dialog); APPLIANCE_PASSPHRASE in the environment is the fallback for
scripts. A repository unlocked once stays unlocked for the rest of the process (argon2id
takes half a second, and a job opens its repository several times). A child process that
reads the repository (a copy-on-write view) gets the unlocked keys through a pipe
(`handover`), never through its command line or environment.

The passphrase itself is never logged and never stored: only the master key it unwraps is
kept, in memory.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable

from appliance.errors import RepositoryError
from appliance.repo.sealing import (
    KEY_FILE,
    DamagedKeyFile,
    Sealer,
    WrongPassphrase,
    unwrap_key,
)
from appliance.repo.store import Store

ENV_PASSPHRASE = "APPLIANCE_PASSPHRASE"
ENV_KEYS_FD = "APPLIANCE_KEYS_FD"  # set for a child only: the read end of a pipe of keys

# asks for the passphrase of the repository at `where` (None: cannot ask)
PassphraseSource = Callable[[str], "str | None"]

_lock = threading.Lock()
_source: PassphraseSource | None = None
_unlocked: dict[str, bytes] = {}  # repository id -> master key
_inherited = False


class WrongPassphraseError(RepositoryError):
    """The passphrase does not open the repository (exit code 6, as every RepositoryError):
    nothing was read or written."""


MIN_LENGTH = 12


def strength(passphrase: str) -> str:
    """A hint, not a rule: how long and how varied the passphrase is (weak, fair, strong)."""
    kinds = sum(
        any(test(c) for c in passphrase)
        for test in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    )
    words = len(passphrase.split())
    if len(passphrase) >= 20 and (kinds >= 2 or words >= 4):
        return "strong"
    if len(passphrase) >= MIN_LENGTH and kinds >= 2:
        return "fair"
    return "weak"


def is_unlocked(repository: str) -> bool:
    with _lock:
        return repository in _unlocked


def set_passphrase_source(source: PassphraseSource | None) -> None:
    global _source
    _source = source


def remember(sealer: Sealer) -> None:
    with _lock:
        _unlocked[sealer.repository] = sealer.master


def forget_all() -> None:
    """Drop every unlocked key (tests; the interface when it closes a repository)."""
    with _lock:
        _unlocked.clear()


def backup_hint(where: str) -> str:
    return (
        f"`appliance key import --repo {where} FILE` puts back the key file from the "
        f"backup that `appliance key export --repo {where}` wrote"
    )


def passphrase_for(where: str, state: str = "is encrypted") -> str:
    """The passphrase, from the front end's source or the environment; a sentence if none
    (`state`: what the repository is, "is encrypted" or has a key that signs its images)."""
    if _source is not None:
        given = _source(where)
        if given is not None:
            return given
    env = os.environ.get(ENV_PASSPHRASE)
    if env:
        return env
    raise RepositoryError(
        f"The repository at {where} {state} and no passphrase was given; type it when "
        f"asked, or give it with --passphrase-file FILE or the {ENV_PASSPHRASE} variable."
    )


def _inherit() -> None:
    """A child reads the keys its parent handed over, once."""
    global _inherited
    if _inherited:
        return
    _inherited = True
    fd_text = os.environ.pop(ENV_KEYS_FD, None)
    if not fd_text or not fd_text.isdigit():
        return
    try:
        with os.fdopen(int(fd_text), "rb") as pipe:
            keys = json.loads(pipe.read())
        for repo_id, hex_key in keys.items():
            _unlocked[str(repo_id)] = bytes.fromhex(hex_key)
    except (OSError, ValueError, AttributeError):
        return  # no keys: the child asks as its parent would


def unlock(store: Store, repository: str, state: str = "is encrypted") -> Sealer:
    """The sealer of the encrypted repository `repository` (its id) kept in `store`; a
    keyed v1 repository (`state`: "has a key that signs its images") takes its master key."""
    where = store.where
    with _lock:
        _inherit()
        master = _unlocked.get(repository)
    if master is not None:
        return Sealer(repository, master)
    try:
        blob = store.get(KEY_FILE)
    except FileNotFoundError:
        raise RepositoryError(
            f"The repository at {where} {state} but its key file {KEY_FILE} is missing; "
            f"{backup_hint(where)}."
        ) from None
    except OSError as exc:
        raise RepositoryError(
            f"The key file of the repository at {where} cannot be read: {exc.strerror}."
        ) from exc
    try:
        owner, master = unwrap_key(blob, passphrase_for(where, state))
    except DamagedKeyFile:
        raise RepositoryError(
            f"The key file {KEY_FILE} of the repository at {where} is damaged; "
            f"{backup_hint(where)}."
        ) from None
    except WrongPassphrase:
        raise WrongPassphraseError(
            f"The passphrase is wrong for the repository at {where}; nothing was read or written."
        ) from None
    if owner != repository:
        raise RepositoryError(
            f"The key file {KEY_FILE} of the repository at {where} belongs to another "
            f"repository; {backup_hint(where)}."
        )
    sealer = Sealer(repository, master)
    remember(sealer)
    return sealer


def handover() -> tuple[dict[str, str], tuple[int, ...]]:
    """(environment additions, file descriptors to pass) that give a child process the
    unlocked keys; the caller closes the descriptors once the child has started."""
    with _lock:
        keys = {repo_id: master.hex() for repo_id, master in _unlocked.items()}
    if not keys:
        return {}, ()
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as pipe:
        pipe.write(json.dumps(keys).encode())  # a few keys: far below the pipe's buffer
    return {ENV_KEYS_FD: str(read_end)}, (read_end,)

"""Repositories on a file server for every command that takes --repo (and import's --from).

An ``ssh://``, ``smb://`` or ``nfs://`` address is mounted before the command runs and
unmounted after it (appliance.repo.netmount); the command itself then sees a folder. The
password, when the server wants one and no --credentials file gives it, is asked on the
terminal without echo (getpass); with no terminal the command stops with a sentence.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import sys
from collections.abc import Iterator
from pathlib import Path

from appliance.errors import ApplianceError, RepositoryError
from appliance.repo.netaddress import is_network

# command -> (the argument that names a place, how it is mounted: "rw" with a check that
# it can be written, "ro", or "rw-quiet": read-write without the check: verify records
# when an image was last verified where it can, and needs nothing else written)
PLACES: dict[str, tuple[tuple[str, str], ...]] = {
    "save": (("repo", "rw"),),
    "restore": (("repo", "ro"),),
    "verify": (("repo", "rw-quiet"),),
    "export": (("repo", "ro"),),
    "extract": (("repo", "ro"),),
    "images": (("repo", "ro"),),
    "info": (("repo", "ro"),),
    "gc": (("repo", "rw"),),
    "delete": (("repo", "rw"),),
    "import": (("repo", "rw"), ("source", "ro")),
    "files": (("repo", "ro"),),
    "init": (("repo", "rw"),),
    "key": (("repo", "rw"),),
    "cast": (("repo", "ro"),),  # cast send; cast receive names no repository
}


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of a command whose repository may be on a file server."""
    parser.add_argument(
        "--credentials",
        type=Path,
        metavar="FILE",
        help="for ssh://, smb:// addresses: a root-only file of username=, password=, "
        "domain=, identity= (an ssh key) lines",
    )
    parser.add_argument(
        "--accept-host-key",
        metavar="FINGERPRINT",
        help="trust an ssh server met for the first time whose host key has this "
        "fingerprint (SHA256:...)",
    )
    add_passphrase_option(parser)


def add_passphrase_option(parser: argparse.ArgumentParser) -> None:
    """An encrypted repository's passphrase (appliance.cli.keys reads it)."""
    parser.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help="an encrypted repository's passphrase, in a file only root can read "
        "(else it is asked, or taken from APPLIANCE_PASSPHRASE)",
    )


def ask_on_terminal(prompt: str) -> str:
    """A password typed on the terminal, not shown."""
    if not sys.stdin.isatty():
        raise RepositoryError(
            f"{prompt.rstrip(': ')} is needed and there is no terminal to ask on; "
            "give it in a file with --credentials FILE."
        )
    return getpass.getpass(prompt)


@contextlib.contextmanager
def network_places(args: argparse.Namespace) -> Iterator[None]:
    """Mount every network address the command names; the arguments then hold the folders
    (the mounts go when the command ends, however it ends)."""
    shown: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for attr, mode in PLACES.get(args.command, ()):
            value = getattr(args, attr, None)
            if not isinstance(value, str) or not is_network(value):
                continue
            # only for a network address: it imports the stores' clients (a fifth of a second)
            from appliance.repo.netmount import NetOptions, mounted

            options = NetOptions(
                credentials=getattr(args, "credentials", None),
                accept_host_key=getattr(args, "accept_host_key", None),
                ask=ask_on_terminal,
            )
            folder = stack.enter_context(
                mounted(
                    value,
                    writable=mode != "ro",
                    check_write=mode == "rw",
                    create=attr == "repo"
                    and (bool(getattr(args, "create", False)) or args.command == "init"),
                    options=options,
                )
            )
            for line in options.said:
                print(f"appliance: {line}", file=sys.stderr)
            setattr(args, attr, str(folder))
            shown[str(folder)] = value
        try:
            yield
        except ApplianceError as exc:
            name_the_address(exc, shown)
            raise


def name_the_address(exc: ApplianceError, shown: dict[str, str]) -> None:
    """A sentence that names a mounted folder names the address the user typed instead."""
    for folder, address in sorted(shown.items(), key=lambda item: -len(item[0])):
        if folder in exc.sentence:
            exc.sentence = exc.sentence.replace(folder, address.rstrip("/"))
            exc.args = (exc.sentence,)

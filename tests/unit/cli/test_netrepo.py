"""Every command that takes --repo reaches a file server the same way (appliance/cli/netrepo.py)."""

from __future__ import annotations

import argparse

from appliance.cli.main import build_parser
from appliance.cli.netrepo import PLACES, name_the_address
from appliance.errors import RepositoryError


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_repo_command_mounts_a_network_address() -> None:
    for name, sub in _subcommands().items():
        options = {o for a in sub._actions for o in a.option_strings}
        if "--repo" in options and name != "mount":  # a lasting mount refuses a share itself
            assert name in PLACES, name
            assert {"--credentials", "--accept-host-key"} <= options, name
    assert set(PLACES) <= set(_subcommands())
    assert dict(PLACES["import"]) == {"repo": "rw", "source": "ro"}
    assert dict(PLACES["restore"]) == {"repo": "ro"} and dict(PLACES["save"]) == {"repo": "rw"}


def test_options_parse() -> None:
    args = build_parser().parse_args(
        ["images", "--repo", "ssh://nas/srv", "--credentials", "/root/nas.cred",
         "--accept-host-key", "SHA256:abc"]
    )  # fmt: skip
    assert (str(args.credentials), args.accept_host_key) == ("/root/nas.cred", "SHA256:abc")


def test_a_sentence_names_the_address_not_the_mount_point() -> None:
    error = RepositoryError("/run/appliance/net/1-2/ssh-nas-0/x is not an image repository.")
    name_the_address(error, {"/run/appliance/net/1-2/ssh-nas-0": "ssh://nas/srv/"})
    assert str(error) == "ssh://nas/srv/x is not an image repository."

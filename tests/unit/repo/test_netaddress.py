"""Network repository addresses and credentials files (appliance/repo/netaddress.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.errors import RepositoryError, UsageError
from appliance.repo.netaddress import (
    Credentials,
    is_network,
    parse_address,
    parse_credentials,
    read_credentials,
)


@pytest.mark.parametrize(
    ("text", "scheme", "user", "host", "port", "path"),
    [
        ("ssh://root@10.0.0.5/srv/images", "ssh", "root", "10.0.0.5", None, "/srv/images"),
        ("ssh://tech@nas:2222/srv/images/", "ssh", "tech", "nas", 2222, "/srv/images"),
        ("smb://files/images", "smb", None, "files", None, "/images"),
        ("smb://anna@files.lan/it/pc%20images", "smb", "anna", "files.lan", None, "/it/pc images"),
        ("nfs://nas/export/images", "nfs", None, "nas", None, "/export/images"),
        ("NFS://[fd00::5]:2050/x", "nfs", None, "fd00::5", 2050, "/x"),
        ("ssh://nas//srv//images", "ssh", None, "nas", None, "/srv/images"),
    ],
)
def test_addresses(
    text: str, scheme: str, user: str | None, host: str, port: int | None, path: str
) -> None:
    assert is_network(text)
    address = parse_address(text)
    assert (address.scheme, address.user, address.host, address.port, address.path) == (
        scheme,
        user,
        host,
        port,
        path,
    )


def test_names_for_messages() -> None:
    address = parse_address("ssh://tech@nas:2222/srv/images")
    assert address.where == "nas port 2222"
    assert address.text == "ssh://tech@nas:2222/srv/images"
    assert parse_address("smb://files/it/pcs").share == "it"
    assert parse_address("smb://files:445/it").where == "files"
    parent = parse_address("nfs://nas/export/images").parent()
    assert (parent.path, parse_address("nfs://nas/export/images").leaf) == ("/export", "images")


@pytest.mark.parametrize(
    "text", ["/srv/images", "images", "http://host/repo", "s3://bucket/x", "LABEL=IMAGES", None]
)
def test_not_network(text: str | None) -> None:
    assert not is_network(text)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("ssh://root:secret@nas/srv", "holds a password"),
        ("smb://nas", "names no share"),
        ("smb://nas/", "names no share"),
        ("nfs://anna@nas/export", "has no user name"),
        ("ssh:///srv", "names no server"),
        ("ssh://nas/srv/../etc", "has a . or .."),
        ("ssh://nas:99999/srv", "is not valid"),
        ("smb://nas/share?x=1", "has a ? or # part"),
    ],
)
def test_bad_addresses(text: str, words: str) -> None:
    with pytest.raises(UsageError, match=words.replace(".", r"\.").replace("?", r"\?")) as caught:
        parse_address(text)
    assert "secret" not in str(caught.value)


def test_credentials_file_format(tmp_path: Path) -> None:
    creds = parse_credentials(
        "# office NAS\nusername=anna\npassword= two words =\ndomain=LAB\nidentity=keys/id\n",
        "x",
        tmp_path,
    )
    assert creds == Credentials("anna", " two words =", "LAB", tmp_path / "keys/id")
    assert "two words" not in repr(creds)
    with pytest.raises(UsageError, match="Line 1 of the credentials file x"):
        parse_credentials("token=abc\n", "x")


def test_credentials_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "creds"
    path.write_text("username=anna\npassword=pw\n")
    path.chmod(0o600)
    assert read_credentials(path).password == "pw"
    path.chmod(0o640)
    with pytest.raises(RepositoryError, match=r"can be read or changed by other users.*chmod 600"):
        read_credentials(path)
    assert read_credentials(path, private=False).username == "anna"  # a labelled partition's
    with pytest.raises(UsageError, match="does not exist"):
        read_credentials(tmp_path / "none")
    if os.geteuid() == 0:
        path.chmod(0o600)
        os.chown(path, 1000, 1000)
        with pytest.raises(RepositoryError, match="other users"):
            read_credentials(path)

"""The mount command lines (no secret in any argv) and the one sentence for each failure,
from the texts sshfs (ssh), mount.cifs and mount.nfs really print
(appliance/repo/netcommand.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.repo.netaddress import parse_address
from appliance.repo.netcommand import (
    FolderMissing,
    cifs_command,
    explain,
    nfs_command,
    sshfs_command,
)

POINT = Path("/run/appliance/net/1-2/x-0")
KNOWN = Path("/var/lib/appliance/known_hosts")


def options(argv: list[str]) -> list[str]:
    return argv[argv.index("-o") + 1].split(",")


def test_sshfs_with_a_key() -> None:
    argv = sshfs_command(
        parse_address("ssh://tech@nas:2222/srv/images"),
        POINT,
        known_hosts=KNOWN,
        writable=False,
        identity=Path("/run/appliance/net/1-2/x-0.key"),
    )
    assert argv[:5] == ["sshfs", "tech@nas:/srv/images", str(POINT), "-p", "2222"]
    opts = options(argv)
    for wanted in (
        "ro",
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        f"UserKnownHostsFile={KNOWN}",
        "GlobalKnownHostsFile=/dev/null",
        "IdentityFile=/run/appliance/net/1-2/x-0.key",
        "IdentitiesOnly=yes",
        "sshfs_verbose",
    ):
        assert wanted in opts
    assert "password_stdin" not in opts


def test_sshfs_with_a_password_reads_it_on_stdin() -> None:
    argv = sshfs_command(
        parse_address("ssh://[fd00::1]/srv"), POINT, known_hosts=KNOWN, writable=True, password=True
    )
    assert argv[1] == "[fd00::1]:/srv"
    opts = options(argv)
    assert {"rw", "password_stdin", "NumberOfPasswordPrompts=1"} <= set(opts)
    assert "BatchMode=yes" not in opts  # it would forbid the password


def test_cifs_takes_the_secret_from_a_file() -> None:
    cred = Path("/run/appliance/net/1-2/x-0.cred")
    argv = cifs_command(
        parse_address("smb://anna@files:1445/it/pc images"), POINT, writable=True, credentials=cred
    )
    assert argv[:5] == ["mount", "-t", "cifs", "//files/it/pc images", str(POINT)]
    assert options(argv) == ["rw", "nodev", "nosuid", "noexec", f"credentials={cred}", "port=1445"]
    guest = cifs_command(parse_address("smb://files/pub"), POINT, writable=False, credentials=None)
    assert options(guest) == ["ro", "nodev", "nosuid", "noexec", "guest"]


def test_nfs_fails_rather_than_hangs() -> None:
    argv = nfs_command(parse_address("nfs://nas/export/images"), POINT, writable=False)
    assert argv[:5] == ["mount", "-t", "nfs", "nas:/export/images", str(POINT)]
    assert {"ro", "soft", "retry=0", "nodev", "nosuid", "noexec"} <= set(options(argv))


SSH = parse_address("ssh://root@127.0.0.1:22222/srv/images")
SMB = parse_address("smb://anna@files/it/images")
NFS = parse_address("nfs://nas/export/images")

# (address, what the program printed, words of the sentence, the folder is missing)
CASES = [
    # sshfs -o sshfs_verbose, captured on this machine against a test sshd
    (SSH, "root@127.0.0.1: Permission denied (publickey).\nread: Connection reset by peer\n",
     "127.0.0.1 port 22222 refused the log-in of root: wrong password or key", False),
    (SSH, "ssh: connect to host 127.0.0.1 port 22222: Connection refused\n"
     "read: Connection reset by peer\n",
     "127.0.0.1 port 22222 refused the connection: no ssh server answers there", False),
    (SSH, "root@127.0.0.1:/srv/images: No such file or directory\n",
     "The folder /srv/images does not exist on 127.0.0.1 port 22222", True),
    (SSH, "root@127.0.0.1:/srv/images: Not a directory\n", "is a file, not a folder", False),
    (SSH, "ssh: Could not resolve hostname nas: Name or service not known\n"
     "read: Connection reset by peer\n", "The server name 127.0.0.1 is not known", False),
    (SSH, "Connection timed out during banner exchange\n"
     "Connection to 10.255.255.1 port 22222 timed out\nread: Connection reset by peer\n",
     "cannot be reached over the network", False),
    (SSH, "No ED25519 host key is known for [127.0.0.1]:22222 and you have requested strict "
     "checking.\nHost key verification failed.\nread: Connection reset by peer\n",
     "is not known yet, so nothing was sent", False),
    (SSH, "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
     "Host key for [127.0.0.1]:22222 has changed and you have requested strict checking.\n"
     "Host key verification failed.\n", "is not the one accepted before", False),
    (SSH, "Unable to negotiate with 127.0.0.1 port 22222: no matching host key type found. "
     "Their offer: ssh-dss\n", "share no ssh protocol version", False),
    (SSH, "subsystem request failed on channel 0\nread: Connection reset by peer\n",
     "offers no SFTP service", False),
    # mount.cifs: "mount error(N): strerror" and its pointer to the manual
    (SMB, "mount error: cifs filesystem not supported by the system\n"
     "mount error(19): No such device\nRefer to the mount.cifs(8) manual page (e.g. man "
     "mount.cifs) and kernel log messages (dmesg)\n", "this system's kernel has no SMB", False),
    (SMB, "mount error(13): Permission denied\nRefer to the mount.cifs(8) manual page\n",
     "files refused anna on the share it: wrong user name or password", False),
    (SMB, "mount error(2): No such file or directory\nRefer to the mount.cifs(8) manual page\n",
     "The share or folder /it/images does not exist on files", True),
    (SMB, "mount error(6): No such device or address\n", "files offers no share named it", False),
    (SMB, "mount error(111): Connection refused\n", "no SMB server answers there", False),
    (SMB, "mount error(113): No route to host\n", "cannot be reached over the network", False),
    (SMB, "mount error(112): Host is down\n", "did not answer in SMB 2 or 3", False),
    (SMB, "mount error(95): Operation not supported\n", "refused the SMB protocol version",
     False),
    (SMB, "mount error: could not resolve address for files: Unknown error\n",
     "The server name files is not known", False),
    # mount.nfs
    (NFS, "mount.nfs: No such device\n", "this system's kernel has no NFS support", False),
    (NFS, "mount.nfs: access denied by server while mounting nas:/export/images\n",
     "nas does not let this machine mount /export/images", True),
    (NFS, "mount.nfs: mounting nas:/export/images failed, reason given by server: No such "
     "file or directory\n", "The folder /export/images does not exist on nas", True),
    (NFS, "mount.nfs: Connection refused\n", "nas refused the connection: no NFS server", False),
    (NFS, "mount.nfs: Connection timed out\n", "cannot be reached over the network", False),
    (NFS, "mount.nfs: requested NFS version or transport protocol is not supported\n",
     "refused the NFS protocol version", False),
    (NFS, "mount.nfs: Protocol not supported\n", "refused the NFS protocol version", False),
    (NFS, "mount.nfs: Failed to resolve server nas: Name or service not known\n",
     "The server name nas is not known", False),
    (NFS, "mount.nfs: Something else went wrong\n",
     "nfs://nas/export/images cannot be mounted: Something else went wrong.", False),
]  # fmt: skip


@pytest.mark.parametrize(("address", "stderr", "words", "missing"), CASES)
def test_one_sentence_per_failure(address: object, stderr: str, words: str, missing: bool) -> None:
    from appliance.repo.netaddress import NetAddress

    assert isinstance(address, NetAddress)
    error = explain(address, stderr, KNOWN)
    sentence = str(error)
    assert words in sentence, sentence
    assert "\n" not in sentence and sentence.endswith(".")
    assert address.host in sentence
    assert isinstance(error, FolderMissing) == missing
    assert error.exit_code == 6

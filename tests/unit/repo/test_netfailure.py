"""A network that fails in the middle of a job is told apart from damaged data: one sentence
naming the host, exit 12 (NetworkError), never exit 9. The mount tables are lines captured
from this machine's /proc/self/mountinfo (sshfs) and from Debian 12 hosts (cifs, nfs4); the
web server is Python's http.server in the test's own thread, stopped under a repository
that was opened through it."""

from __future__ import annotations

import errno
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from kit.webserve import free_port

from appliance.errors import CorruptData, NetworkError, RepositoryError
from appliance.repo.chunk import Encoder, content_hash
from appliance.repo.httpstore import HttpStore
from appliance.repo.netfailure import network_failure, network_share
from appliance.repo.repository import Repository
from appliance.repo.store import LocalStore

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
91 22 0:52 / /run/appliance/net/4711-99/ssh-10.0.0.5 rw,nosuid,nodev,relatime shared:48 \
- fuse.sshfs root@10.0.0.5:/srv/images rw,user_id=0,group_id=0
92 22 0:53 / /run/appliance/net/4711-99/smb-nas rw,relatime shared:49 - cifs //nas/images \
rw,vers=3.1.1,cache=strict,username=tech
93 22 0:54 / /mnt/nfs\\040share rw,relatime shared:50 - nfs4 filer.lab:/export/images \
rw,vers=4.2,soft,timeo=150
"""


def test_the_share_and_its_host_are_read_from_the_mount_table() -> None:
    ssh = network_share(Path("/run/appliance/net/4711-99/ssh-10.0.0.5/repo"), MOUNTINFO)
    assert ssh is not None and (ssh.host, ssh.kind) == ("10.0.0.5", "sshfs")
    smb = network_share(Path("/run/appliance/net/4711-99/smb-nas"), MOUNTINFO)
    assert smb is not None and (smb.host, smb.kind) == ("nas", "SMB")
    nfs = network_share(Path("/mnt/nfs share/repo"), MOUNTINFO)
    assert nfs is not None and (nfs.host, nfs.kind) == ("filer.lab", "NFS")
    assert network_share(Path("/srv/repo"), MOUNTINFO) is None  # ext4: not a share


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOTCONN, errno.ESTALE])
def test_a_share_that_went_away_is_a_network_error(code: int) -> None:
    store = LocalStore(Path("/run/appliance/net/4711-99/ssh-10.0.0.5/repo"))
    lost = network_failure(store, OSError(code, "gone"), "reading chunk ab12", None, MOUNTINFO)
    assert isinstance(lost, NetworkError) and lost.exit_code == 12
    assert str(lost) == (
        "The file server 10.0.0.5 stopped answering while reading chunk ab12 from the sshfs "
        "share root@10.0.0.5:/srv/images (gone)."
    )


def test_a_local_disks_error_stays_its_own() -> None:
    store = LocalStore(Path("/srv/repo"))
    assert network_failure(store, OSError(errno.EIO, "I/O"), "reading", None, MOUNTINFO) is None
    share = LocalStore(Path("/mnt/nfs share/repo"))
    missing = FileNotFoundError(errno.ENOENT, "missing")
    assert network_failure(share, missing, "reading", None, MOUNTINFO) is None
    assert network_failure(share, OSError(errno.ENOSPC, "full"), "reading", None, MOUNTINFO) is None


def test_a_share_that_unmounted_itself_is_a_network_error() -> None:
    """sshfs unmounts its share when its connection is lost: the folder is then an empty
    local one, and the read's "no such file" is the network's failure."""
    store = LocalStore(Path("/run/appliance/net/4711-99/ssh-10.0.0.5/repo"))
    share = network_share(store.root, MOUNTINFO)
    gone = "\n".join(line for line in MOUNTINFO.splitlines() if "sshfs" not in line)
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory")
    lost = network_failure(store, missing, "reading chunk ab12", share, gone)
    assert str(lost) == (
        "The file server 10.0.0.5 stopped answering while reading chunk ab12 from the sshfs "
        "share root@10.0.0.5:/srv/images (the share is no longer mounted: sshfs lost its "
        "connection)."
    )
    # still mounted: a missing file is a missing file
    assert network_failure(store, missing, "reading chunk ab12", share, MOUNTINFO) is None


def test_a_bucket_that_stops_answering_names_its_endpoint() -> None:
    bucket = SimpleNamespace(endpoint="http://127.0.0.1:9000", bucket="images")
    cause = "the S3 endpoint http://127.0.0.1:9000 cannot be reached (connection refused)"
    lost = network_failure(bucket, OSError(errno.EHOSTUNREACH, cause), "reading chunk ab12")
    assert str(lost) == (
        "The bucket images stopped answering while reading chunk ab12: the S3 endpoint "
        "http://127.0.0.1:9000 cannot be reached (connection refused)."
    )
    answered = OSError(errno.EREMOTEIO, "the bucket images answered InternalError")
    assert network_failure(bucket, answered, "reading chunk ab12") is None


def _stored_chunk(folder: Path) -> str:
    repo = Repository.create(LocalStore(folder))
    data = bytes(range(256)) * 4096
    name = content_hash(data)
    repo.put_chunk(name, Encoder().encode(data))
    return name


def test_a_web_server_stopped_mid_job_is_exit_12_not_9(tmp_path: Path) -> None:
    name = _stored_chunk(tmp_path / "repo")
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    repo = Repository.in_store(HttpStore(f"{base}/repo/", attempts=2, backoff=0.01))
    assert repo.get_chunk(name)
    httpd.shutdown()
    httpd.server_close()
    thread.join()
    with pytest.raises(NetworkError) as err:
        repo.get_chunk(name)
    assert not isinstance(err.value, CorruptData)
    assert str(err.value) == (
        f"The web server at {base} cannot be reached: the connection was refused (2 tries)."
    )


def test_a_web_server_unreachable_at_the_start_keeps_exit_6() -> None:
    where = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RepositoryError) as err:
        Repository.in_store(HttpStore(f"{where}/repo/", attempts=1))
    assert type(err.value) is RepositoryError and err.value.exit_code == 6
    assert "cannot be reached: the connection was refused" in str(err.value)

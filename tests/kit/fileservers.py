"""File servers for the VM tests' SMB and NFS repositories, on 127.0.0.1 and a free port,
each started as the test's own process (in the foreground) and stopped by its PID:

- `samba`: Debian's smbd with its own smb.conf and state folders (nothing of /etc/samba or
  /var/lib/samba is used), one share, and one user with a password made here. The SMB user
  ``tech`` is mapped to the Unix user root (``username map``), so no account is added to
  this machine.
- `ganesha`: NFS-Ganesha (Debian's nfs-ganesha, nfs-ganesha-vfs), the userspace NFS server:
  this machine's kernel has no nfsd. NFS 4 only over TCP, so no rpcbind or mountd is needed;
  one folder exported read-write with no root squash.

qemu's user network shows the host's 127.0.0.1 to the guest as 10.0.2.2, so the guest
reaches both at 10.0.2.2 and the port.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kit.webserve import free_port, stop_server, wait_listening

SMB_USER = "tech"


@dataclass(frozen=True)
class FileServer:
    port: int
    folder: Path  # what the share or export holds
    log: Path

    def text(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.log.parent.glob("log*"))
        )


@contextmanager
def _serving(
    argv: list[str], output: Path, log: Path, port: int, folder: Path
) -> Iterator[FileServer]:
    """Start `argv` (its output into `output`), wait until it listens on `port`, serve, stop.

    The server gets a session of its own: smbd signals its process group when it stops, and
    in the test's group that ended pytest itself before it printed any result."""
    with open(output, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        wait_listening(port, proc, log, timeout=30)
        yield FileServer(port, folder, log)
    finally:
        stop_server(proc, grace=15)


SMB_CONF = """\
[global]
    server role = standalone server
    netbios name = LABSERVER
    workgroup = WORKGROUP
    interfaces = 127.0.0.1
    bind interfaces only = yes
    smb ports = {port}
    disable netbios = yes
    server min protocol = SMB2_10
    map to guest = never
    passdb backend = tdbsam:{state}/private/passdb.tdb
    username map = {state}/users.map
    private dir = {state}/private
    lock directory = {state}/lock
    state directory = {state}/state
    cache directory = {state}/cache
    pid directory = {state}/pid
    ncalrpc dir = {state}/ncalrpc
    binddns dir = {state}/bind-dns
    log file = {state}/log.smbd
    log level = 1
    load printers = no
    printcap name = /dev/null
    disable spoolss = yes

[{share}]
    path = {folder}
    read only = no
    valid users = root
"""


@contextmanager
def samba(work: Path, share: str, password: str) -> Iterator[FileServer]:
    """smbd serving `share` (the folder work/share) to the user ``tech`` with `password`."""
    if shutil.which("smbd") is None:
        raise AssertionError("smbd is missing: apt-get install samba")
    state = work / "samba"
    folder = work / share
    for sub in ("private", "lock", "state", "cache", "pid", "ncalrpc", "bind-dns"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    (state / "users.map").write_text(f"root = {SMB_USER}\n")
    port = free_port()
    conf = state / "smb.conf"
    conf.write_text(SMB_CONF.format(port=port, state=state, share=share, folder=folder))
    subprocess.run(
        ["smbpasswd", "-c", str(conf), "-s", "-a", "root"],
        input=f"{password}\n{password}\n",
        text=True,
        check=True,
        capture_output=True,
    )
    log = state / "log.stdout"
    argv = ["smbd", "--foreground", "--no-process-group", f"--configfile={conf}", "--debug-stdout"]
    with _serving(argv, log, log, port, folder) as server:
        yield server


GANESHA_CONF = """\
NFS_CORE_PARAM {{
    NFS_Port = {port};
    Bind_addr = 127.0.0.1;
    Protocols = 4;
    Enable_NLM = false;
    Enable_RQUOTA = false;
}}
NFSV4 {{
    Graceless = true;
    RecoveryBackend = fs;
    RecoveryRoot = {state}/recovery;
}}
NFS_KRB5 {{
    Active_krb5 = false;
}}
EXPORT {{
    Export_Id = 7;
    Path = {folder};
    Pseudo = /{name};
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    Protocols = 4;
    Transports = TCP;
    FSAL {{
        Name = VFS;
    }}
}}
LOG {{
    Default_Log_Level = EVENT;
}}
"""


@contextmanager
def ganesha(work: Path, name: str, folder: Path) -> Iterator[FileServer]:
    """ganesha.nfsd exporting `folder` as nfs://HOST:PORT/`name` (NFS 4, TCP)."""
    if shutil.which("ganesha.nfsd") is None:
        raise AssertionError("ganesha.nfsd is missing: apt-get install nfs-ganesha nfs-ganesha-vfs")
    state = work / "ganesha"
    (state / "recovery").mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = state / "ganesha.conf"
    conf.write_text(GANESHA_CONF.format(port=port, state=state, folder=folder, name=name))
    log = state / "log.ganesha"
    log.write_text("")
    argv = ["ganesha.nfsd", "-F", "-f", str(conf), "-L", str(log),
            "-p", str(state / "ganesha.pid"), "-N", "NIV_EVENT"]  # fmt: skip
    with _serving(argv, state / "log.stdout", log, port, folder) as server:
        yield server

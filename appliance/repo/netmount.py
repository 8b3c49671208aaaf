"""A repository on a file server, mounted for the length of one job.

``with mounted("ssh://root@host/srv/images", writable=True, options=...) as folder:`` mounts
the share (sshfs, mount.cifs, mount.nfs: appliance.repo.netcommand), yields the repository's
folder on this machine, and unmounts it at the end, also when the job fails or is stopped.
From there on the repository is an ordinary folder (LocalStore).

Mounts live under ``RUN_DIR/net/<pid>-<start time>/``, one folder per job process; a job that
was killed leaves its folder behind, and the next job removes it (unmounting what is mounted
there) once that process is gone: only its own mount root, never another mount.

Secrets: the password is asked through `NetOptions.ask` (masked) or read from a credentials
file only root can read; sshfs gets it on stdin, mount.cifs in a ``credentials=`` file made
0600 in the job's own folder and removed right after the mount. Never an argv, a log line, an
image or the kernel command line. ssh host keys are kept in the appliance's own known hosts
file (STATE_DIR/known_hosts); an unknown host is refused with its fingerprint (HostKeyUnknown)
unless that fingerprint is accepted (``--accept-host-key``, the interface's question).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from appliance.disk.usage import mounts
from appliance.errors import ApplianceError, RepositoryError, UsageError
from appliance.repo import mount as repomount
from appliance.repo.lock import process_running, process_start_time
from appliance.repo.netaddress import Credentials, NetAddress, parse_address, read_credentials
from appliance.repo.netcommand import (
    FolderMissing,
    cifs_command,
    explain,
    nfs_command,
    sshfs_command,
)
from appliance.repo.sshhosts import check_host_key, known_hosts_file
from appliance.tools import run, which

MOUNT_TIMEOUT = 120.0
Ask = Callable[[str], str]  # a prompt -> what was typed (masked); raises to stop


@dataclass
class NetOptions:
    """How a job reaches a file server: where its credentials come from, which ssh host key
    it accepts, and whom it may ask (None: an unattended job, which asks nothing)."""

    credentials: Path | None = None
    accept_host_key: str | None = None
    ask: Ask | None = None
    private_credentials: bool = True  # refuse a credentials file others can read
    said: list[str] = field(default_factory=list)  # what happened, for the job's output
    password: str | None = field(default=None, repr=False)  # once asked, asked no more
    given: Credentials | None = field(default=None, repr=False)  # read already (unattended)


class PasswordNeeded(RepositoryError):
    """The server wants a password that was not given: an interface asks for it (masked)
    and tries again with NetOptions.password set."""

    def __init__(self, prompt: str) -> None:
        super().__init__(f"{prompt.rstrip(': ')} is needed.")
        self.prompt = prompt


def ask_later(prompt: str) -> str:
    """NetOptions.ask for an interface that asks between tries (PasswordNeeded)."""
    raise PasswordNeeded(prompt)


def net_root() -> Path:
    return repomount.RUN_DIR / "net"


def _owner_name(pid: int) -> str | None:
    start = process_start_time(pid)
    return f"{pid}-{start}" if start else None


def clean_stale_mounts() -> list[str]:
    """Unmount and remove what killed jobs left under net_root(); the mount points freed."""
    root = net_root()
    freed: list[str] = []
    try:
        owners = [p for p in root.iterdir() if p.is_dir()]
    except OSError:
        return freed
    for owner in owners:
        pid_text, _, start = owner.name.partition("-")
        if not pid_text.isdigit() or process_running(int(pid_text), start):
            continue
        prefix = f"{owner}/"
        for mount in reversed(mounts()):
            if mount.point.startswith(prefix):
                with contextlib.suppress(ApplianceError):
                    run(["umount", "-l", mount.point], timeout=60)
                    freed.append(mount.point)
        _remove_owner(owner)
    return freed


def _remove_owner(owner: Path) -> None:
    """Empty mount points and leftover files of `owner`; never below a mount (rmdir only)."""
    with contextlib.suppress(OSError):
        for entry in owner.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                with contextlib.suppress(OSError):
                    entry.rmdir()
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
    with contextlib.suppress(OSError):
        owner.rmdir()


def is_mounted(point: Path) -> bool:
    text = str(point)
    return any(m.point == text for m in mounts())


def _run_mount(argv: list[str], secret: str | None) -> tuple[int, str]:
    """Run a mount program: its exit code and what it printed. Its output goes to a file,
    not a pipe (sshfs's daemon would hold a pipe open); its own session, so Ctrl-C on the
    terminal stops the job, which then unmounts, rather than killing ssh under it."""
    which(argv[0])
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if secret is not None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            start_new_session=True,
        )
        try:
            proc.communicate(None if secret is None else secret + "\n", timeout=MOUNT_TIMEOUT)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        err.seek(0)
        return proc.returncode, err.read()


def _private_file(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def _credentials(options: NetOptions) -> Credentials:
    if options.given is not None:
        return options.given
    if options.credentials is None:
        return Credentials()
    return read_credentials(options.credentials, private=options.private_credentials)


def load_credentials(path: Path, *, private: bool = True) -> Credentials:
    """A credentials file and the ssh key it names, read into memory."""
    creds = read_credentials(path, private=private)
    if creds.identity is None:
        return creds
    return replace(creds, key=_read_key(creds.identity))


def _read_key(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"The key file {path} cannot be read.") from exc


def _ask(options: NetOptions, prompt: str, address: NetAddress) -> str:
    if options.ask is None:
        raise RepositoryError(
            f"{address.where} asks for a password and this job cannot ask; give a "
            "credentials file (--credentials, or appliance.credentials= unattended)."
        )
    return options.ask(prompt)


def _mount_ssh(
    address: NetAddress,
    point: Path,
    writable: bool,
    options: NetOptions,
    owner: Path,
    creds: Credentials,
) -> None:
    known = known_hosts_file()
    said = check_host_key(address, options.accept_host_key)
    if said:
        options.said.append(said)
    if address.user is None:
        address = replace(address, user=creds.username or "root")
    key = None
    if creds.key is not None or creds.identity is not None:
        data = creds.key if creds.key is not None else _read_key(creds.identity or Path())
        key = _private_file(owner, f"{point.name}.key", data)  # ssh wants it 0600
    password = creds.password or options.password
    try:
        while True:
            argv = sshfs_command(
                address,
                point,
                known_hosts=known,
                writable=writable,
                identity=key,
                password=password is not None,
            )
            code, stderr = _run_mount(argv, password)
            if code == 0:
                return
            refused = "permission denied" in stderr.lower()
            # no key or password was given: root's own keys were refused, so ask
            if refused and password is None and key is None and options.ask is not None:
                password = options.ask(f"Password for {address.user}@{address.where}: ")
                options.password = password
                continue
            raise explain(address, stderr, known)
    finally:
        if key is not None:
            with contextlib.suppress(OSError):
                key.unlink()


def _mount_smb(
    address: NetAddress,
    point: Path,
    writable: bool,
    options: NetOptions,
    owner: Path,
    creds: Credentials,
) -> None:
    which("mount.cifs")
    user = address.user or creds.username
    password = creds.password or options.password
    if user and password is None:
        prompt = f"Password for {user} on //{address.host}/{address.share}: "
        password = options.password = _ask(options, prompt, address)
    if user:
        address = replace(address, user=user)
    credfile = None
    if user:
        lines = [f"username={user}", f"password={password or ''}"]
        if creds.domain:
            lines.append(f"domain={creds.domain}")
        credfile = _private_file(owner, f"{point.name}.cred", ("\n".join(lines) + "\n").encode())
    try:
        argv = cifs_command(address, point, writable=writable, credentials=credfile)
        code, stderr = _run_mount(argv, None)
    finally:
        if credfile is not None:
            with contextlib.suppress(OSError):
                credfile.unlink()
    if code != 0:
        raise explain(address, stderr, known_hosts_file())


def _mount_nfs(
    address: NetAddress,
    point: Path,
    writable: bool,
    options: NetOptions,
    owner: Path,
    creds: Credentials,
) -> None:
    del options, owner, creds  # NFS (sec=sys) asks for no credentials
    which("mount.nfs")
    code, stderr = _run_mount(nfs_command(address, point, writable=writable), None)
    if code != 0:
        raise explain(address, stderr, known_hosts_file())


MOUNTERS = {"ssh": _mount_ssh, "smb": _mount_smb, "nfs": _mount_nfs}


def check_writable(location: str, folder: Path) -> None:
    """RepositoryError with the sentence when the share at `location`, mounted at `folder`,
    cannot be written (the interface asks before a save)."""
    _check_writable(parse_address(location), folder if folder.is_dir() else folder.parent)


class HeldMount:
    """A network repository mounted until `close()`: the interface keeps the one it uses
    mounted while it is chosen (read-write; a save checks that it can write first)."""

    def __init__(self, location: str, options: NetOptions) -> None:
        self.location = location
        self._stack = contextlib.ExitStack()
        self.folder = self._stack.enter_context(
            mounted(location, writable=True, check_write=False, options=options)
        )

    def check_writable(self) -> None:
        check_writable(self.location, self.folder)

    def close(self) -> None:
        self._stack.close()


def _check_writable(address: NetAddress, folder: Path) -> None:
    """A save needs a share it can write: one small file made and removed, before the job
    starts (a read-only export mounts read-write and fails only at the first write)."""
    probe = folder / f".appliance-write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        if exc.errno == errno.EROFS:
            raise RepositoryError(
                f"The share {address.text} on {address.where} is read-only; a save needs "
                "one it can write to."
            ) from exc
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise RepositoryError(
                f"{address.where} does not let {address.user or 'this machine'} write in "
                f"{address.path}: permission denied."
            ) from exc
        raise RepositoryError(
            f"{address.path} on {address.where} cannot be written: {exc.strerror}."
        ) from exc
    os.close(fd)
    with contextlib.suppress(OSError):
        probe.unlink()


def unmount(point: Path) -> None:
    """Unmount `point` (a busy mount is retried, then detached lazily) and remove it."""
    for attempt in range(4):
        if not is_mounted(point):
            break
        try:
            run(["umount", *(["-l"] if attempt == 3 else []), str(point)], timeout=60)
        except ApplianceError:
            time.sleep(0.5)
    with contextlib.suppress(OSError):
        point.rmdir()


def _new_point(owner: Path, stem: str) -> Path:
    """An empty mount point of this job's own (two mounts at once get two)."""
    for number in range(1000):
        point = owner / f"{stem}-{number}"
        try:
            point.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return point
    raise RepositoryError(f"The appliance has too many mounts under {owner}.")


def _owner_folder() -> Path:
    name = _owner_name(os.getpid())
    if name is None:
        raise RepositoryError("The appliance cannot read its own process record in /proc.")
    owner = net_root() / name
    owner.mkdir(mode=0o700, parents=True, exist_ok=True)
    return owner


@contextlib.contextmanager
def mounted(
    location: str,
    *,
    writable: bool,
    check_write: bool | None = None,
    create: bool = False,
    options: NetOptions | None = None,
) -> Iterator[Path]:
    """The repository at the network address `location`, mounted (read-only unless
    `writable`) for the length of the `with`; its folder on this machine. `check_write`
    (default: `writable`) refuses a share that cannot be written before the job starts.
    With `create` (a save making a new repository) a missing last folder is made in the
    one above."""
    options = options or NetOptions()
    address = parse_address(location)
    creds = _credentials(options)  # a bad file is refused before anything else
    clean_stale_mounts()
    owner = _owner_folder()
    point = _new_point(owner, f"{address.scheme}-{address.host.replace(':', '_')}")
    try:
        folder = _mount_folder(address, point, writable, create, options, owner, creds)
        if writable if check_write is None else check_write:
            _check_writable(address, folder if folder.is_dir() else folder.parent)
        yield folder
    finally:
        unmount(point)
        with contextlib.suppress(OSError):
            owner.rmdir()  # only when this job has no other mount


def _mount_folder(
    address: NetAddress,
    point: Path,
    writable: bool,
    create: bool,
    options: NetOptions,
    owner: Path,
    creds: Credentials,
) -> Path:
    mount = MOUNTERS[address.scheme]
    try:
        mount(address, point, writable, options, owner, creds)
        return point
    except FolderMissing:
        if not (create and address.path.count("/") > 1):
            raise
    mount(address.parent(), point, writable, options, owner, creds)
    return point / address.leaf

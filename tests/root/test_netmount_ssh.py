"""A repository on an ssh server, for real: sshd on 127.0.0.1 (tests/kit/sshserver.py), the
appliance's command line mounting it with sshfs, a loop disk saved there and restored onto
another, each failure one sentence with nothing written and no mount left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit.cli import appliance, file_digest, refused, result_json
from kit.diskbuild import GPT_DISK_SIZE, build_gpt_disk, sparse_file
from kit.diskcompare import assert_equivalent
from kit.interrupt import ctrl_c_live
from kit.loops import Loops
from kit.sshserver import SshServer, fuse_mounts_under, ssh_server

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with ssh_server(tmp_path_factory.mktemp("sshd") / "server") as running:
        yield running


@dataclass(frozen=True)
class Net:
    server: SshServer
    run_dir: Path  # the appliance's mounts go below run_dir/net
    remote: Path  # a folder on the "server" (this machine's file system)

    def no_mounts_left(self) -> None:
        assert fuse_mounts_under(self.run_dir) == []
        assert not any((self.run_dir / "net").glob("*/*")), list((self.run_dir / "net").iterdir())


@pytest.fixture
def net(server: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Net]:
    """The appliance's mount root and known hosts file of this test only (the children that
    the test starts inherit the variables)."""
    run_dir = tmp_path / "run"
    monkeypatch.setenv("APPLIANCE_RUN_DIR", str(run_dir))
    monkeypatch.setenv("APPLIANCE_STATE_DIR", str(tmp_path / "state"))
    remote = tmp_path / "remote"
    remote.mkdir()
    net = Net(server, run_dir, remote)
    try:
        yield net
    finally:
        for point in reversed(fuse_mounts_under(run_dir)):  # a failed test's leftovers
            subprocess.run(["umount", "-l", point], check=False)


def with_key(net: Net, *args: str) -> tuple[str, ...]:
    return (*args, "--credentials", str(net.server.credentials))


def accepted(net: Net, *args: str) -> tuple[str, ...]:
    return (*with_key(net, *args), "--accept-host-key", net.server.fingerprint)


def test_save_restore_through_sshfs(net: Net, loops: Loops, tmp_path: Path) -> None:
    source = build_gpt_disk(loops, tmp_path / "source.img")
    repo = net.remote / "images"
    address = net.server.address(repo)

    # an unknown host: the fingerprint in one sentence, nothing sent, nothing mounted
    proc = appliance(*with_key(net, "images", "--repo", address), check=False)
    sentence = refused(proc, 6, net.server.fingerprint)
    assert "is not known yet" in sentence and "--accept-host-key" in sentence
    net.no_mounts_left()

    proc = appliance(
        *accepted(net, "save", source, "--repo", address, "--image", "net", "--create"),
        "--json",
    )
    assert "accepted the ED25519 host key" in proc.stderr
    assert result_json(proc)["image"] == "net"
    assert (repo / "repo.json").is_file()
    assert (repo / "images" / "net" / "manifest.json").is_file()
    assert not (repo / "lock").exists()
    assert not list(repo.glob(".appliance-write-test-*"))
    net.no_mounts_left()

    listing = json.loads(appliance(*with_key(net, "images", "--repo", address, "--json")).stdout)
    assert [i["name"] for i in listing["images"]] == ["net"]
    appliance(*with_key(net, "verify", "--repo", address, "--image", "net"))
    net.no_mounts_left()

    target = loops.attach(sparse_file(tmp_path, "target.img", GPT_DISK_SIZE))
    appliance(*with_key(net, "restore", "--repo", address, "--image", "net", target, "--yes"))
    net.no_mounts_left()
    assert_equivalent(source, target)


def test_wrong_key_is_one_sentence(net: Net, loops: Loops, tmp_path: Path) -> None:
    source = loops.attach(sparse_file(tmp_path, "source.img", 64 << 20))
    before = file_digest(tmp_path / "source.img")
    proc = appliance(
        "save",
        source,
        "--repo",
        net.server.address(net.remote / "images"),
        "--image",
        "x",
        "--create",
        "--credentials",
        str(net.server.wrong_credentials),
        "--accept-host-key",
        net.server.fingerprint,
        check=False,
    )
    refused(proc, 6, f"127.0.0.1 port {net.server.port} refused the log-in of root")
    assert list(net.remote.iterdir()) == []
    assert file_digest(tmp_path / "source.img") == before
    net.no_mounts_left()


def test_closed_port_is_one_sentence(net: Net) -> None:
    from kit.sshserver import free_port

    port = free_port()
    proc = appliance(
        *with_key(net, "images", "--repo", f"ssh://root@127.0.0.1:{port}{net.remote}"),
        check=False,
    )
    refused(proc, 6, f"127.0.0.1 port {port} refused the connection")
    net.no_mounts_left()


def test_missing_folder_is_one_sentence(net: Net) -> None:
    missing = net.remote / "nothing-here"
    proc = appliance(*accepted(net, "images", "--repo", net.server.address(missing)), check=False)
    refused(proc, 6, f"The folder {missing} does not exist on 127.0.0.1 port {net.server.port}")
    assert not missing.exists()
    net.no_mounts_left()


def test_password_without_terminal_or_file(net: Net) -> None:
    proc = appliance(
        "images",
        "--repo",
        net.server.address(net.remote),
        "--accept-host-key",
        net.server.fingerprint,
        check=False,
    )
    refused(proc, 6, "there is no terminal to ask on; give it in a file with --credentials")
    net.no_mounts_left()


def test_credentials_readable_by_others_are_refused(net: Net, tmp_path: Path) -> None:
    loose = tmp_path / "loose.cred"
    loose.write_text(net.server.credentials.read_text())
    loose.chmod(0o644)
    proc = appliance(
        "images", "--repo", net.server.address(net.remote), "--credentials", str(loose),
        check=False,
    )  # fmt: skip
    refused(proc, 6, f"The credentials file {loose} can be read or changed by other users")
    net.no_mounts_left()


KILLED_JOB = """
import os, sys
from pathlib import Path
from appliance.repo.netmount import NetOptions, mounted
options = NetOptions(credentials=Path(sys.argv[2]), accept_host_key=sys.argv[3])
with mounted(sys.argv[1], writable=True, options=options) as folder:
    print(folder, flush=True)
    os.kill(os.getpid(), 9)
"""


def test_a_killed_jobs_mount_is_removed_at_the_next_start(net: Net) -> None:
    address = net.server.address(net.remote)
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_JOB, address, str(net.server.credentials),
         net.server.fingerprint],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = proc.stdout.strip()
    assert fuse_mounts_under(net.run_dir) == [left]
    (net.remote / "seen-through-the-mount").write_text("x")
    assert (Path(left) / "seen-through-the-mount").exists()

    # another job's live mount under the same root is left alone
    stat = Path("/proc/self/stat").read_text()
    start = stat[stat.rfind(")") + 2 :].split()[19]
    other = net.run_dir / "net" / f"{os.getpid()}-{start}"  # this test process: alive
    other.mkdir()
    proc = appliance(*with_key(net, "images", "--repo", address), check=False)
    refused(proc, 6, "is not an image repository")
    assert fuse_mounts_under(net.run_dir) == []
    assert not Path(left).parent.exists()
    assert (net.remote / "seen-through-the-mount").exists()  # the share itself is untouched
    assert other.is_dir()
    other.rmdir()


def test_lock_free_space_and_durability_on_sshfs(net: Net) -> None:
    """The repository's rules hold on sshfs: the O_EXCL lock excludes a second writer, the
    free space is the server's, and sync() flushes every chunk on the server (each file is
    fsynced there: syncfs() does not reach an sshfs server's disk)."""
    from appliance.errors import RepositoryLocked
    from appliance.repo.netmount import NetOptions, mounted
    from appliance.repo.repository import Repository
    from appliance.repo.store import LocalStore

    options = NetOptions(credentials=net.server.credentials, accept_host_key=net.server.fingerprint)
    address = net.server.address(net.remote / "repo")
    with mounted(address, writable=True, create=True, options=options) as folder:
        repo = Repository.open_or_create(folder)
        with (
            repo.lock("save"),
            pytest.raises(RepositoryLocked, match="in use by another job"),
        ):
            repo.lock("save").acquire()
        assert not (net.remote / "repo" / "lock").exists()

        server = os.statvfs(net.remote)
        free = repo.free_bytes()
        assert free is not None
        assert abs(free - server.f_bavail * server.f_frsize) < 64 << 20

        store = repo.store
        assert isinstance(store, LocalStore)
        repo.put_chunk("ab" * 32, b"chunk bytes")
        assert store._unsynced == [str(folder / "chunks/ab/ab" / ("ab" * 32))]
        repo.sync()
        assert store._unsynced == []
    assert (net.remote / "repo" / "chunks" / "ab" / "ab" / ("ab" * 32)).read_bytes() == (
        b"chunk bytes"
    )
    net.no_mounts_left()


def test_unattended_save_reads_its_credentials_from_a_labelled_partition(
    net: Net, loops: Loops, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import uuid

    from kit.diskcompare import mounted as mounted_part
    from kit.diskcompare import run

    from appliance.cli import unattended
    from appliance.cli.unattended import Console

    label = "K" + uuid.uuid4().hex[:10].upper()
    keys = loops.attach(sparse_file(tmp_path, "keys.img", 64 << 20))
    run("sfdisk", "--quiet", keys, input="label: gpt\nstart=2048, type=linux\n")
    run("partx", "-u", keys)
    run("mkfs.ext4", "-q", "-F", "-L", label, f"{keys}p1")
    with mounted_part(f"{keys}p1", "ext4", readonly=False) as top:
        (top / "net.cred").write_text("identity=client_key\n")
        (top / "client_key").write_bytes((net.server.folder / "client_key").read_bytes())
    source = loops.attach(sparse_file(tmp_path, "source.img", 64 << 20))
    run("sfdisk", "--quiet", source, input="label: gpt\nstart=2048, size=32MiB, type=linux\n")
    run("partx", "-u", source)
    run("mkfs.ext4", "-q", "-F", f"{source}p1")

    from appliance.repo import mount as repomount

    monkeypatch.setattr(repomount, "RUN_DIR", net.run_dir)  # this process's mounts too
    common = (
        f"appliance.job=save appliance.source={source} appliance.image=lab "
        f"appliance.repo={net.server.address(net.remote / 'lab')} appliance.wait=2 "
        f"appliance.host_key={net.server.fingerprint}"
    )
    out = io.StringIO()
    code = unattended.run(common, Console(out, []), power_action=pytest.fail)
    assert code == 6, out.getvalue()  # no credentials: it asks nothing and says why
    assert f"FAILED: 127.0.0.1 port {net.server.port} refused the log-in of root" in out.getvalue()
    net.no_mounts_left()

    out = io.StringIO()
    line = f"{common} appliance.credentials=LABEL={label}:/net.cred"
    code = unattended.run(line, Console(out, []), power_action=pytest.fail)
    assert code == 0, out.getvalue()
    assert "unattended save done: Saved" in out.getvalue()
    assert (net.remote / "lab" / "images" / "lab" / "manifest.json").is_file()
    assert "identity" not in out.getvalue() and "BEGIN OPENSSH" not in out.getvalue()
    net.no_mounts_left()
    assert f"{keys}p1" not in Path("/proc/mounts").read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_save_unmounts(net: Net, loops: Loops, tmp_path: Path, sig: int) -> None:
    """Ctrl-C (SIGINT) or SIGTERM in the middle of a save: exit 130, the share unmounted."""
    import time

    source = build_gpt_disk(loops, tmp_path / "source.img")
    repo = net.remote / "images"
    args = accepted(net, "save", source, "--repo", net.server.address(repo), "--image", "cut")
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", *args, "--create", "--progress", "none"],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_live,
    )
    deadline = time.monotonic() + 60
    while not (repo / "lock").exists():  # the save runs: it holds the repository's lock
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGSTOP)  # frozen mid-save: the stop cannot land after its end
    try:
        assert fuse_mounts_under(net.run_dir) != []
        proc.send_signal(sig)
    finally:
        proc.send_signal(signal.SIGCONT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    net.no_mounts_left()
    assert not (repo / "lock").exists()
    assert not (repo / "images" / "cut" / "manifest.json").exists() or (
        '"complete": true' not in (repo / "images" / "cut" / "manifest.json").read_text()
    )

"""VM disk files read as raw disks through appliance.shelf.vmdisk (qemu-storage-daemon's FUSE
export): VM disks made by qemu-img from a real loop disk read back as that disk's bytes; the
daemon and its mount are gone afterwards, also when the reader fails; damaged or foreign
files get one sentence."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.diskcompare import device_size, run
from kit.loops import Loops
from kit.plaindisk import build_plain_disk, sha256_of

from appliance.errors import CorruptData, ImageError, UnsupportedImage
from appliance.shelf.vmdisk import RawView, inspect

pytestmark = pytest.mark.root

# qemu's format -> the name ending and the options that keep the disk's exact size
FORMATS = {
    "vhdx": (".vhdx", []),
    "vpc": (".vhd", ["-o", "subformat=dynamic,force_size=on"]),
    "qcow2": (".qcow2", []),
    "vmdk": (".vmdk", []),
    "vdi": (".vdi", []),
}


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("vmdisk")
    loops = Loops(folder)
    try:
        yield build_plain_disk(loops, folder / "source.img"), folder
    finally:
        loops.cleanup()


def vm_file(disk: tuple[str, Path], fmt: str) -> Path:
    node, folder = disk
    suffix, options = FORMATS[fmt]
    path = folder / f"disk{suffix}"
    if not path.exists():
        run("qemu-img", "convert", "-f", "raw", "-O", fmt, *options, node, str(path))
    return path


def write_one_byte(path: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"x", 0)
        os.fsync(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_vm_disk_reads_as_the_disk_it_was_made_from(disk: tuple[str, Path], fmt: str) -> None:
    node, _ = disk
    path = vm_file(disk, fmt)
    with RawView(path) as view:
        assert view.size == device_size(node)
        assert os.path.getsize(view.path) == view.size
        assert sha256_of(view.path) == sha256_of(node)
        pid = view.proc.pid if view.proc else 0
        folder = Path(view.path).parent
        with pytest.raises(OSError):  # read-only, even for root
            write_one_byte(view.path)
    assert view.returncode == 0
    assert not os.path.exists(f"/proc/{pid}"), "the daemon still runs"
    assert not folder.exists()


def test_the_daemon_stops_when_the_reader_fails(disk: tuple[str, Path]) -> None:
    path = vm_file(disk, "vhdx")
    with pytest.raises(RuntimeError), RawView(path) as view:
        pid = view.proc.pid if view.proc else 0
        mountpoint = view.path
        raise RuntimeError("the reader failed")
    assert not os.path.exists(f"/proc/{pid}")
    assert not os.path.ismount(mountpoint)
    assert not os.path.exists(mountpoint)


def test_a_damaged_qcow2_is_named_in_one_sentence(disk: tuple[str, Path], tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.qcow2"
    damaged.write_bytes(vm_file(disk, "qcow2").read_bytes())
    with open(damaged, "r+b") as handle:  # the first L1 entry points far past the file's end
        handle.seek(40)
        (l1_offset,) = struct.unpack(">Q", handle.read(8))
        handle.seek(l1_offset)
        handle.write(struct.pack(">Q", (1 << 63) | (1 << 40)))
    with pytest.raises(CorruptData, match=r"The QCOW2 disk .*damaged.qcow2 is damaged \("):
        inspect(damaged)


def test_foreign_and_missing_files_get_one_sentence(tmp_path: Path) -> None:
    fake = tmp_path / "fake.vhdx"
    fake.write_bytes(b"not a vhdx" * 1000)
    with pytest.raises(UnsupportedImage, match="cannot be read as a VHDX disk"):
        inspect(fake)
    with pytest.raises(ImageError, match="There is no VM disk file"):
        inspect(tmp_path / "missing.vmdk")
    with pytest.raises(UnsupportedImage, match="not a VM disk file"):
        inspect(tmp_path / "disk.img")


def test_the_daemon_stops_when_its_job_is_killed(disk: tuple[str, Path]) -> None:
    """setpriv --pdeathsig: a job killed with SIGKILL cannot stop its daemon itself."""
    path = vm_file(disk, "vhdx")
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from appliance.shelf.vmdisk import RawView\n"
        "view = RawView(Path(sys.argv[1])).__enter__()\n"
        "print(view.proc.pid, view.path, flush=True)\n"
        "time.sleep(60)\n"
    )
    job = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert job.stdout is not None
        pid_text, mountpoint = job.stdout.readline().split()
        assert os.path.ismount(mountpoint)
        job.kill()
        job.wait()
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid_text}") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{pid_text}"), "the daemon outlived its job"
        assert not os.path.ismount(mountpoint)
        # the next view removes the killed one's folder (once it is older than a start)
        folder = Path(mountpoint).parent
        os.utime(folder, (time.time() - 3600, time.time() - 3600))
        with RawView(path):
            assert not folder.exists()
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()

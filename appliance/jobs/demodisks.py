"""Demo disks: sparse files on loop devices that look like a laptop, a new SSD and a USB stick,
so a person can try every job without touching a real disk. Made with the real tools, and
always cleaned up (loop devices detached, mounts undone, files removed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from appliance.disk.probe import partition_node, probe_disk
from appliance.errors import DeviceError
from appliance.tools import run

MiB = 1024 * 1024
LAPTOP_TABLE = """label: gpt
size=100MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI system partition"
size=16MiB, type=E3C9E316-0B5C-4DB8-817D-F92DF00215AE, name="Microsoft reserved partition"
size=300MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="Basic data partition"
size=400MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="linux"
size=64MiB, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name="swap"
"""


@dataclass
class DemoDisks:
    folder: Path
    laptop: str = ""
    ssd: str = ""
    stick: str = ""
    repo: Path = Path()
    loops: list[tuple[str, Path]] = field(default_factory=list)
    mounts: list[Path] = field(default_factory=list)

    def attach(self, name: str, size: int) -> str:
        path = self.folder / f"{name}.img"
        with open(path, "wb") as handle:
            handle.truncate(size)
        node = run(["losetup", "--find", "--show", str(path)]).stdout.strip()
        self.loops.append((node, path))
        return node

    def mount(self, node: str, where: Path, fuse_ntfs: bool = False) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        run(["ntfs-3g", node, str(where)] if fuse_ntfs else ["mount", node, str(where)])
        self.mounts.append(where)
        return where

    def unmount(self, where: Path) -> None:
        run(["umount", str(where)], check=False)
        if where in self.mounts:
            self.mounts.remove(where)

    def cleanup(self) -> None:
        for where in reversed(self.mounts):
            run(["umount", str(where)], check=False)
        self.mounts.clear()
        for node, path in reversed(self.loops):
            backing = Path(f"/sys/block/{Path(node).name}/loop/backing_file")
            with contextlib.suppress(OSError):
                if Path(backing.read_text().strip()) == path:
                    run(["losetup", "--detach", node], check=False)
        self.loops.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


def _fill_laptop(demo: DemoDisks) -> None:
    disk = demo.laptop
    run(["sfdisk", "--quiet", disk], input_text=LAPTOP_TABLE)
    run(["partx", "--update", disk], check=False)
    probed = probe_disk(disk)
    esp, msr, win, linux, swap = (partition_node(probed, n) for n in (1, 2, 3, 4, 5))
    del msr
    run(["mkfs.fat", "-F", "32", "-n", "ESP", esp])
    boot = demo.folder / "BOOTX64.EFI"
    boot.write_bytes(os.urandom(700_000))
    run(["mmd", "-i", esp, "::EFI", "::EFI/BOOT"])
    run(["mcopy", "-i", esp, str(boot), "::EFI/BOOT/BOOTX64.EFI"])
    run(["mkfs.ntfs", "--quick", "--label", "Windows", win])
    where = demo.mount(win, demo.folder / "mnt-win", fuse_ntfs=True)
    (where / "Users" / "Demo" / "Documents").mkdir(parents=True)
    for number in range(20):
        (where / "Users" / "Demo" / "Documents" / f"letter-{number}.txt").write_text(
            f"Dear customer number {number},\n" * 200
        )
    (where / "Users" / "Demo" / "photo.raw").write_bytes(os.urandom(20 * MiB))
    demo.unmount(where)
    run(["mkfs.ext4", "-q", "-L", "linux", linux])
    where = demo.mount(linux, demo.folder / "mnt-linux")
    shutil.copytree("/usr/share/doc", where / "doc", symlinks=True, ignore_dangling_symlinks=True)
    (where / "old-download.bin").write_bytes(os.urandom(30 * MiB))
    os.sync()
    (where / "old-download.bin").unlink()  # free space now holds stale bytes
    demo.unmount(where)
    run(["mkswap", "--label", "swap", swap])


@contextlib.contextmanager
def demo_disks() -> Iterator[DemoDisks]:
    """A laptop disk with Windows-like GPT layout and real filesystems, a blank larger SSD,
    and a USB stick whose filesystem holds the repository (mounted)."""
    if os.geteuid() != 0:
        raise DeviceError("The demo makes loop devices, which needs root; run it as root.")
    base = Path(os.environ.get("APPLIANCE_DEMO_DIR", "/var/tmp"))
    demo = DemoDisks(Path(tempfile.mkdtemp(prefix="appliance-demo-", dir=base)))
    try:
        demo.laptop = demo.attach("laptop", 1024 * MiB)
        demo.ssd = demo.attach("new-ssd", 1536 * MiB)
        demo.stick = demo.attach("usb-stick", 2048 * MiB)
        _fill_laptop(demo)
        run(["mkfs.ext4", "-q", "-L", "IMAGES", demo.stick])
        demo.repo = demo.mount(demo.stick, demo.folder / "usb-stick") / "images"
        yield demo
    finally:
        demo.cleanup()

"""disk/bootmedium: the disk the appliance booted from, found from live-boot's medium mount
in mountinfo text and a fake sysfs tree (the layout the kernel uses: /sys/dev/block/M:m is a
link to the device's folder under /sys/block; a partition's folder has a `partition` file
and sits in its disk's folder; a loop device has loop/backing_file)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.disk import probe
from appliance.disk.bootmedium import (
    ENV,
    LIVE_MEDIUM,
    NOT_LIVE,
    RAM_NOTE,
    find_boot_medium,
    medium_places,
)
from appliance.disk.identity import Identity

ROOT = "22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/run/live/rootfs/fs.squashfs/\n"
PROC = "23 22 0:22 / /proc rw,nosuid - proc proc rw\n"


def line(devnum: str, point: str, fstype: str, source: str, number: int = 40) -> str:
    return f"{number} 22 {devnum} / {point} ro,noatime shared:7 - {fstype} {source} ro\n"


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    """sdb (a stick with one partition, 8:16 and 8:17) and sda (8:0) under a fake /sys."""
    sys_root = tmp_path / "sys"
    for disk, devnum, parts in (("sda", "8:0", {}), ("sdb", "8:16", {"sdb1": "8:17"})):
        folder = sys_root / "block" / disk
        folder.mkdir(parents=True)
        (folder / "dev").write_text(devnum + "\n")
        _link(sys_root, devnum, folder)
        for part, partnum in parts.items():
            (folder / part).mkdir()
            (folder / part / "partition").write_text("1\n")
            (folder / part / "dev").write_text(partnum + "\n")
            _link(sys_root, partnum, folder / part)
    return sys_root


def _link(sys_root: Path, devnum: str, target: Path) -> None:
    links = sys_root / "dev" / "block"
    links.mkdir(parents=True, exist_ok=True)
    (links / devnum).symlink_to(target)


def test_a_medium_on_a_partition_is_the_stick_it_is_on(sysfs: Path) -> None:
    text = ROOT + PROC + line("8:17", "/run/live/medium", "vfat", "/dev/sdb1")
    medium = find_boot_medium(mountinfo=text, sys_root=sysfs, places=LIVE_MEDIUM)
    assert medium.disks == {"sdb"}
    assert (medium.mountpoint, medium.fstype, medium.in_ram) == ("/run/live/medium", "vfat", False)
    assert medium.note() is None


def test_a_hybrid_iso_written_to_a_stick_is_mounted_whole(sysfs: Path) -> None:
    text = ROOT + line("8:16", "/run/live/medium", "iso9660", "/dev/sdb")
    assert find_boot_medium(mountinfo=text, sys_root=sysfs, places=LIVE_MEDIUM).disks == {"sdb"}


def test_the_medium_of_older_live_boot_is_found_too(sysfs: Path) -> None:
    text = ROOT + line("8:17", "/lib/live/mount/medium", "iso9660", "/dev/sdb1")
    medium = find_boot_medium(mountinfo=text, sys_root=sysfs, places=LIVE_MEDIUM)
    assert (medium.mountpoint, medium.disks) == ("/lib/live/mount/medium", {"sdb"})


def test_toram_leaves_a_tmpfs_and_no_disk_to_name(sysfs: Path) -> None:
    """live-boot's copy_live_to: the stick unmounted, a tmpfs moved onto the medium's place."""
    text = ROOT + line("0:45", "/run/live/medium", "tmpfs", "/dev/shm")
    medium = find_boot_medium(mountinfo=text, sys_root=sysfs, places=LIVE_MEDIUM)
    assert medium.in_ram and medium.disks == frozenset()
    assert medium.note() == RAM_NOTE and "cannot be told apart" in RAM_NOTE


def test_the_last_mount_on_the_medium_place_is_the_one_seen(sysfs: Path) -> None:
    under = line("8:17", "/run/live/medium", "vfat", "/dev/sdb1", 40)
    over = line("0:45", "/run/live/medium", "tmpfs", "/dev/shm", 41)
    assert find_boot_medium(
        mountinfo=ROOT + under + over, sys_root=sysfs, places=LIVE_MEDIUM
    ).in_ram
    on_top = find_boot_medium(mountinfo=ROOT + over + under, sys_root=sysfs, places=LIVE_MEDIUM)
    assert on_top.disks == {"sdb"}


def test_a_network_medium_is_on_no_disk(sysfs: Path) -> None:
    text = ROOT + line("0:52", "/run/live/medium", "nfs", "10.0.0.1:/srv/live")
    medium = find_boot_medium(mountinfo=text, sys_root=sysfs, places=LIVE_MEDIUM)
    assert medium.mountpoint == "/run/live/medium"
    assert medium.disks == frozenset() and not medium.in_ram


def test_not_a_live_system(sysfs: Path) -> None:
    text = ROOT + PROC + line("8:17", "/media/stick", "vfat", "/dev/sdb1")
    assert find_boot_medium(mountinfo=text, sys_root=sysfs, places=LIVE_MEDIUM) == NOT_LIVE
    assert NOT_LIVE.note() is None and not NOT_LIVE.in_ram


def test_an_iso_file_on_a_disk_findiso_leads_to_that_disk(sysfs: Path, tmp_path: Path) -> None:
    """findiso=: the medium is a loop device over an ISO file; the disk holding the file
    is what the appliance booted from (the loop device too, with --all)."""
    iso = tmp_path / "appliance.iso"
    iso.write_bytes(b"\0" * 4096)
    holder = os.stat(iso).st_dev  # the real disk of the file, given a name in the fake tree
    holder_num = f"{os.major(holder)}:{os.minor(holder)}"
    (sysfs / "block" / "sdh").mkdir()
    _link(sysfs, holder_num, sysfs / "block" / "sdh")
    loop = sysfs / "block" / "loop0"
    (loop / "loop").mkdir(parents=True)
    (loop / "loop" / "backing_file").write_text(f"{iso}\n")
    _link(sysfs, "7:0", loop)
    text = ROOT + line("7:0", "/run/live/medium", "iso9660", "/dev/loop0")
    medium = find_boot_medium(mountinfo=text, sys_root=sysfs, places=LIVE_MEDIUM)
    assert medium.disks == {"loop0", "sdh"}


def test_a_device_sysfs_does_not_know_is_no_disk(sysfs: Path) -> None:
    text = ROOT + line("8:33", "/run/live/medium", "vfat", "/dev/sdc1")
    assert find_boot_medium(mountinfo=text, sys_root=sysfs, places=LIVE_MEDIUM).disks == set()


def test_the_seam_names_other_mount_points(tmp_path: Path) -> None:
    real = tmp_path / "medium"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert medium_places({}) == LIVE_MEDIUM
    assert medium_places({ENV: ""}) == LIVE_MEDIUM
    assert medium_places({ENV: f"{tmp_path / 'link'}:/x/y"}) == (str(real), "/x/y")


def test_the_seam_is_used_when_no_places_are_given(
    sysfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, str(tmp_path / "fake medium"))
    text = ROOT + line("8:17", str(tmp_path / "fake\\040medium"), "ext4", "/dev/sdb1")
    medium = find_boot_medium(mountinfo=text, sys_root=sysfs)
    assert medium.disks == {"sdb"}
    # live-boot's own place is not looked at while the seam names another
    text = ROOT + line("8:17", "/run/live/medium", "ext4", "/dev/sdb1")
    assert find_boot_medium(mountinfo=text, sys_root=sysfs) == NOT_LIVE


def test_the_boot_stick_is_probed_for_its_identity_only() -> None:
    """Its table is never read: /dev/sdz does not exist, so reading it would fail."""
    ident = Identity(
        name="sdz",
        size=512 * 1024 * 1024,
        logical_sector=512,
        physical_sector=512,
        model="VirtIO disk",
        serial="APPLIANCE-STICK",
        devnum=(8, 208),
        removable=True,
        readonly=True,
        is_loop=False,
        backing_file=None,
    )
    disk = probe._build(ident, frozenset({"sdz"}))
    assert disk.boot_stick and disk.node == "/dev/sdz"
    assert (disk.serial, disk.readonly, disk.removable) == ("APPLIANCE-STICK", True, True)
    assert disk.table is None and disk.partitions == () and disk.incomplete is None

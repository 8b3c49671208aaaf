"""disk/usage and disk/identity: the single helpers every layer uses (mountinfo, device
numbers, partition numbers, the nearest existing folder), on captured kernel text.

data/mountinfo.txt is /proc/self/mountinfo of the test machine, captured while a tmpfs was
mounted read-only at "/tmp/dd mnt/a b" (the kernel writes its spaces as \\040).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.disk.identity import parse_devnum, partition_number
from appliance.disk.usage import Mount, filesystem_type, mounted_devnums, mounts, nearest_existing
from appliance.repo.mount import MountInfo, mount_table

MOUNTINFO = (Path(__file__).parent / "data" / "mountinfo.txt").read_text()
# a line with optional fields (shared:, master:) before the "-", as systemd hosts print them
OPTIONAL = "90 27 8:17 /data /srv/my\\040data rw,nosuid shared:12 master:3 - xfs /dev/sdb1 rw\n"


def test_every_line_is_read_with_its_type_and_options() -> None:
    found = mounts(MOUNTINFO)
    assert len(found) == len(MOUNTINFO.splitlines())
    assert found[0] == Mount((0, 21), "/proc", ("rw", "relatime"), "proc")
    root = next(m for m in found if m.point == "/")
    assert (root.devnum, root.fstype, root.options[0]) == ((254, 0), "ext4", "rw")


def test_escaped_spaces_become_spaces() -> None:
    spaced = mounts(MOUNTINFO)[-1]
    assert spaced == Mount((0, 40), "/tmp/dd mnt/a b", ("ro", "relatime"), "tmpfs")


def test_tabs_and_backslashes_are_unescaped_too() -> None:
    line = "91 27 8:18 / /mnt/a\\011b\\134c rw - ext4 /dev/sdb2 rw\n"
    assert mounts(line)[0].point == "/mnt/a\tb\\c"


def test_optional_fields_do_not_shift_the_type() -> None:
    (found,) = mounts(OPTIONAL)
    assert found == Mount((8, 17), "/srv/my data", ("rw", "nosuid"), "xfs")


def test_the_first_mount_of_a_device_wins() -> None:
    text = MOUNTINFO + OPTIONAL + OPTIONAL.replace("/srv/my\\040data", "/again")
    assert mounted_devnums(text)[(8, 17)] == "/srv/my data"
    table = mount_table(text)  # the repository's view is built on the same parser
    assert table[(8, 17)] == MountInfo("/srv/my data", False)
    assert table[(0, 40)] == MountInfo("/tmp/dd mnt/a b", True)
    assert table[(254, 0)] == MountInfo("/", False)


@pytest.mark.parametrize(
    ("text", "devnum"),
    [("8:17", (8, 17)), ("259:3\n", (259, 3)), (" 7:0 ", (7, 0)), ("", (0, 0))],
)
def test_device_numbers(text: str, devnum: tuple[int, int]) -> None:
    assert parse_devnum(text) == devnum


@pytest.mark.parametrize("text", [None, "8", "8:x", "a:1"])
def test_malformed_device_numbers_are_no_device(text: str | None) -> None:
    assert parse_devnum(text) == (0, 0)


@pytest.mark.parametrize(
    ("node", "number"),
    [
        ("sda1", 1),
        ("/dev/sda12", 12),
        ("nvme0n1p2", 2),
        ("/dev/nvme10n1p15", 15),
        ("mmcblk0p3", 3),
        ("loop7p1", 1),
        ("/dev/loop12p128", 128),
        ("sda", None),
        ("/dev/disk/by-label/boot", None),
    ],
)
def test_partition_numbers(node: str, number: int | None) -> None:
    assert partition_number(node) == number


def test_nearest_existing_walks_up_to_a_folder_that_exists(tmp_path: Path) -> None:
    assert nearest_existing(tmp_path / "a" / "b" / "c") == tmp_path
    assert nearest_existing(tmp_path) == tmp_path
    assert nearest_existing(Path("/nonexistent-top/x")) == Path("/")


def test_the_filesystem_of_a_folder_not_made_yet_is_its_parents(tmp_path: Path) -> None:
    st = tmp_path.stat()
    devnum = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    point = str(tmp_path.resolve())
    text = f"99 1 {devnum} / {point} rw,relatime - testfs none rw\n"
    assert filesystem_type(tmp_path / "new" / "repo", text) == "testfs"

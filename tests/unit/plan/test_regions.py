from appliance.disk.model import Disk, Partition
from appliance.plan.regions import merge, outside_ranges, regions
from appliance.repo.manifest import window_ranges

MiB = 1024 * 1024


def gpt_disk() -> Disk:
    parts = (
        Partition(1, 1 * MiB, 64 * MiB, "", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
        Partition(2, 65 * MiB, 100 * MiB, "", "0fc63daf-8483-4772-8e79-3d69d8477de4"),
    )
    size = 200 * MiB
    return Disk(
        "loop9",
        "/dev/loop9",
        size,
        512,
        512,
        table="gpt",
        first_lba=2048,
        last_lba=size // 512 - 34,
        partitions=parts,
    )


def test_merge() -> None:
    assert merge([(10, 5), (0, 10), (20, 1), (21, 0), (15, 2)]) == [(0, 17), (20, 1)]


def test_gpt_outside_is_head_and_backup_table() -> None:
    disk = gpt_disk()
    assert outside_ranges(disk) == [(0, MiB), (disk.size - 33 * 512, 33 * 512)]


def test_mbr_extended_keeps_ebr_gaps() -> None:
    parts = (
        Partition(1, MiB, 10 * MiB, "", "83"),
        Partition(2, 11 * MiB, 30 * MiB, "", "05", kind="extended"),
        Partition(5, 12 * MiB, 10 * MiB, "", "83", kind="logical"),
        Partition(6, 23 * MiB, 18 * MiB, "", "83", kind="logical"),
    )
    disk = Disk("loop9", "/dev/loop9", 64 * MiB, 512, 512, table="dos", partitions=parts)
    assert outside_ranges(disk) == [(0, MiB), (11 * MiB, MiB), (22 * MiB, MiB)]
    names = [r.name for r in regions(disk)]
    assert names == ["outside", "p1", "p5", "p6"]  # the extended container is no region


def test_window_ranges_split_at_window_edges() -> None:
    win = 4 * MiB
    got = window_ranges([(0, 512), (win - 512, 1024), (3 * win, win)], win, 5 * win)
    assert got == {0: [(0, 512), (win - 512, 512)], 1: [(0, 512)], 3: [(0, win)]}


def test_window_ranges_clip_to_region() -> None:
    assert window_ranges([(0, 10_000)], 4096, 6000) == {0: [(0, 4096)], 1: [(0, 1904)]}

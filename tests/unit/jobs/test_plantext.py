"""One rendering of a write plan: what the target holds now and what it will hold, in lines
that the command line, the unattended mode and the interface all print."""

from __future__ import annotations

from appliance.cli.jobs import describe_plan
from appliance.disk.model import Disk, Partition
from appliance.jobs.plantext import PlanText, layout_lines, target_now
from appliance.plan.fit import SourcePart, fit
from appliance.repo.manifest import Region

MiB = 1024 * 1024


def test_target_now_names_its_partitions() -> None:
    parts = (
        Partition(1, MiB, 100 * MiB, "/dev/sdb1", "ef", fstype="vfat", label="EFI"),
        Partition(2, 101 * MiB, 400 * MiB, "/dev/sdb2", "83", fstype="ext4"),
    )
    disk = Disk("sdb", "/dev/sdb", 1024 * MiB, 512, 512, table="dos", partitions=parts)
    assert target_now(disk) == ("partition 1: 104.9 MB vfat EFI", "partition 2: 419.4 MB ext4")


def test_an_interrupted_restore_is_said_first() -> None:
    disk = Disk(
        "sdb",
        "/dev/sdb",
        1024 * MiB,
        512,
        512,
        table="gpt",
        incomplete="incomplete restore of pc1, started 2026-12-01 16:00",
    )
    assert target_now(disk) == (
        "an incomplete restore of pc1, started 2026-12-01 16:00 (no valid partition table; "
        "this job writes it again from the start)",
    )


def test_layout_says_what_grows_and_what_stays_free() -> None:
    parts = [SourcePart(1, "primary", "83", MiB, 400 * MiB, "ext4")]
    plan = fit(parts, table="dos", source_size=512 * MiB, target_size=2048 * MiB, sector=512)
    regions = [
        Region("outside", None, 0, 512 * MiB, "table"),
        Region("p1", 1, MiB, 400 * MiB, "partclone", "ext4", label="root"),
    ]
    lines = layout_lines("dos", regions, plan, 2048 * MiB)
    assert lines[0] == "DOS partition table"
    assert (
        lines[1].startswith("partition 1: ")
        and "(partclone, grown from 419.4 MB; the filesystem grows)" in lines[1]
    )
    assert len(lines) == 2  # the one partition takes the whole disk: nothing is left free
    unfitted = layout_lines("dos", regions, None, 2048 * MiB)
    assert unfitted[1] == "partition 1: 419.4 MB ext4 root (partclone)"
    assert unfitted[2].endswith("at the end stay unallocated")


def test_the_command_line_prints_the_plan_lines_in_order() -> None:
    text = PlanText(
        "restore",
        "image pc1, saved 2026-12-01 16:00 from QEMU HARDDISK (1.1 GB), 200 MB of data",
        "QEMU HARDDISK (1.1 GB) at /dev/sdb",
        ("no partitions",),
        ("GPT partition table", "partition 1: 1.1 GB ext4 (partclone)"),
        ("1. mark the target", "2. write partition 1"),
    )
    assert describe_plan(text).splitlines() == [
        "Image pc1, saved 2026-12-01 16:00 from QEMU HARDDISK (1.1 GB), 200 MB of data.",
        "Target QEMU HARDDISK (1.1 GB) at /dev/sdb",
        "will be ERASED. It now holds:",
        "  no partitions",
        "It will hold:",
        "  GPT partition table",
        "  partition 1: 1.1 GB ext4 (partclone)",
    ]

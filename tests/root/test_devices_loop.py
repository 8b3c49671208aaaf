"""devices on real loop devices: tables written by sfdisk, filesystems by mkfs, and every
probed value compared with what sfdisk --json, blkid and sysfs say independently."""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.cli.disks import run_disks
from appliance.disk.model import Disk
from appliance.disk.probe import (
    list_disks,
    partition_node,
    probe_disk,
    probe_source,
    set_kernel_partitions,
    sync_partitions,
)
from appliance.errors import DeviceError, SafetyRefusal
from appliance.jobs.fitting import recheck_target

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root and loop devices"),
]

MiB = 1024 * 1024
EFI = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
SWAP = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"


def _sh(*argv: str, stdin: str | None = None) -> str:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr.strip()}"
    return proc.stdout


def _backing(node: str) -> str | None:
    try:
        text = Path(f"/sys/block/{Path(node).name}/loop/backing_file").read_text().strip()
    except OSError:
        return None
    return text.removesuffix(" (deleted)")


class Attached:
    """Loop devices this test attached (node -> backing file); only those are detached."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.loops: dict[str, str] = {}

    def disk(self, name: str, size: int, sector: int = 512, script: str | None = None) -> str:
        path = self.folder / name
        with open(path, "wb") as handle:
            handle.truncate(size)
        argv = ["losetup", "--find", "--show"] + (["-b", str(sector)] if sector != 512 else [])
        node = _sh(*argv, str(path)).strip()
        self.loops[node] = str(path.resolve())
        subprocess.run(["partx", "-d", node], capture_output=True, check=False)  # stale ones
        if script is not None:
            _sh("sfdisk", "-q", "--no-reread", "--no-tell-kernel", node, stdin=script)
            if "type=" in script:  # partx -u fails on a table with no partition
                _sh("partx", "-u", node)
        return node

    def detach_all(self) -> None:
        failures = []
        for node, backing in reversed(list(self.loops.items())):
            if _backing(node) != backing:
                continue  # no longer ours: never touch it
            subprocess.run(["partx", "-d", node], capture_output=True, check=False)
            proc = subprocess.run(["losetup", "-d", node], capture_output=True, text=True)
            if proc.returncode != 0:
                failures.append(f"{node}: {proc.stderr.strip()}")
        self.loops.clear()
        assert not failures, "; ".join(failures)


@pytest.fixture
def attached(tmp_path: Path) -> Iterator[Attached]:
    loops = Attached(tmp_path)
    try:
        yield loops
    finally:
        loops.detach_all()


def sfdisk(node: str) -> dict[str, Any]:
    table: dict[str, Any] = json.loads(_sh("sfdisk", "--json", node))["partitiontable"]
    return table


def blkid(node: str, key: str) -> str | None:
    proc = subprocess.run(
        ["blkid", "-p", "-o", "value", "-s", key, node], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() or None


def sysfs_start(node: str) -> int:
    name = Path(node).name
    disk = name.rsplit("p", 1)[0]
    return int(Path(f"/sys/block/{disk}/{name}/start").read_text()) * 512


def assert_matches_tools(disk: Disk) -> None:
    """Every table and filesystem field of `disk` against sfdisk --json and blkid -p."""
    table = sfdisk(disk.node)
    sector = int(table["sectorsize"])
    assert sector == disk.logical_sector
    assert disk.table == table["label"]
    assert disk.table_id == str(table["id"]).lower()
    if table["label"] == "gpt":
        assert (disk.first_lba, disk.last_lba) == (table["firstlba"], table["lastlba"])
    rows = table.get("partitions", [])
    assert len(disk.partitions) == len(rows)
    for part, row in zip(disk.partitions, rows, strict=True):
        assert row["node"].endswith(f"p{part.number}")
        assert (part.start, part.size) == (row["start"] * sector, row["size"] * sector)
        if table["label"] == "gpt":
            assert part.type == row["type"].lower()
            assert part.guid == row["uuid"].lower()
            assert part.name == row.get("name")
        else:
            assert part.type == f"{int(row['type'], 16):02x}"
        if part.kind == "extended":
            assert part.fstype is None
            continue
        assert part.node == row["node"]
        assert sysfs_start(part.node) == part.start
        assert (part.fstype, part.label, part.uuid) == (
            blkid(part.node, "TYPE"),
            blkid(part.node, "LABEL"),
            blkid(part.node, "UUID"),
        )


def test_gpt_with_ext4_xfs_swap(attached: Attached) -> None:
    node = attached.disk(
        "gpt.img",
        400 * MiB,
        script=(
            "label: gpt\n"
            f'start=2048, size={64 * MiB // 512}, type={EFI}, name="boot part"\n'
            f'size={320 * MiB // 512}, type={LINUX}, name="data"\n'
            f"type={SWAP}\n"
        ),
    )
    _sh("mkfs.ext4", "-q", "-L", "bootfs", f"{node}p1")
    _sh("mkfs.xfs", "-q", "-L", "datafs", f"{node}p2")
    _sh("mkswap", "-L", "sw", "-U", "4a1248fe-fcb1-400c-af97-0205b28f25ed", f"{node}p3")
    disk = probe_disk(node)
    assert_matches_tools(disk)
    assert [p.fstype for p in disk.partitions] == ["ext4", "xfs", "swap"]
    assert [p.label for p in disk.partitions] == ["bootfs", "datafs", "sw"]
    assert disk.partitions[2].uuid == "4a1248fe-fcb1-400c-af97-0205b28f25ed"
    assert disk.partitions[0].start == 1 * MiB and disk.partitions[1].size == 320 * MiB
    assert "esp" in disk.partitions[0].flags
    assert (disk.size, disk.is_loop, disk.model, disk.serial) == (
        400 * MiB,
        True,
        "Loop device",
        None,
    )
    assert disk.backing_file == attached.loops[node]
    rdev = os.stat(node).st_rdev
    assert disk.devnum == (os.major(rdev), os.minor(rdev))
    # the table alone (what a restore's last step needs): the same partitions, no filesystems
    bare = probe_disk(node, filesystems=False)
    assert [(p.number, p.start, p.size, p.node, p.type) for p in bare.partitions] == [
        (p.number, p.start, p.size, p.node, p.type) for p in disk.partitions
    ]
    assert [p.fstype for p in bare.partitions] == [None, None, None]


def test_mbr_with_extended_and_logicals(attached: Attached) -> None:
    node = attached.disk(
        "mbr.img",
        64 * MiB,
        script=(
            "label: dos\n"
            "start=2048, size=32768, type=83, bootable\n"
            "start=34816, type=5\n"
            "start=36864, size=16384, type=82\n"
            "start=55296, type=83\n"
        ),
    )
    first = probe_disk(node)
    # partx -u does not add logical partitions; partition_node must
    nodes = [partition_node(first, n) for n in (1, 2, 5, 6)]
    assert nodes == [f"{node}p{n}" for n in (1, 2, 5, 6)]
    _sh("mkfs.ext4", "-q", "-L", "linux1", nodes[0])
    _sh("mkswap", "-L", "swap5", nodes[2])
    _sh("mkfs.ext4", "-q", "-L", "linux6", nodes[3])
    disk = probe_disk(node)
    assert_matches_tools(disk)
    assert [(p.number, p.kind, p.type) for p in disk.partitions] == [
        (1, "primary", "83"),
        (2, "extended", "05"),
        (5, "logical", "82"),
        (6, "logical", "83"),
    ]
    assert [p.fstype for p in disk.partitions] == ["ext4", None, "swap", "ext4"]
    assert "boot" in disk.partitions[0].flags
    assert disk.table_id is not None and disk.table_id.startswith("0x")


def test_4k_sector_disk(attached: Attached) -> None:
    node = attached.disk(
        "4k.img",
        64 * MiB,
        sector=4096,
        script=(f"label: gpt\nsize={16 * MiB // 4096}, type={LINUX}\ntype={LINUX}\n"),
    )
    _sh("mkfs.ext4", "-q", "-L", "four", f"{node}p1")
    disk = probe_disk(node)
    assert (disk.logical_sector, disk.size) == (4096, 64 * MiB)
    assert sfdisk(node)["sectorsize"] == 4096
    assert_matches_tools(disk)
    assert disk.partitions[0].start == 1 * MiB  # 256 sectors of 4096 bytes
    assert (disk.partitions[0].fstype, disk.partitions[1].fstype) == ("ext4", None)


def test_no_table_and_empty_table(attached: Attached) -> None:
    bare = attached.disk("bare.img", 16 * MiB)
    _sh("mkfs.ext4", "-q", bare)
    blank = attached.disk("blank.img", 16 * MiB)
    empty = attached.disk("empty.img", 16 * MiB, script="label: gpt\n")
    assert (probe_disk(bare).table, probe_disk(bare).partitions) == (None, ())
    assert probe_disk(blank).table is None
    disk = probe_disk(empty)
    assert (disk.table, disk.partitions) == ("gpt", ())
    assert disk.table_id == sfdisk(empty)["id"].lower()


def test_names_symlinks_and_refusals(attached: Attached, tmp_path: Path) -> None:
    node = attached.disk("names.img", 32 * MiB, script=f"label: gpt\ntype={LINUX}\n")
    link = tmp_path / "by-id-link"
    link.symlink_to(node)
    name = Path(node).name
    assert probe_disk(name) == probe_disk(node) == probe_disk(str(link))
    with pytest.raises(DeviceError, match="is a partition, not a whole disk"):
        probe_disk(f"{node}p1")
    with pytest.raises(DeviceError, match="not a block device"):
        probe_disk(attached.loops[node])
    with pytest.raises(DeviceError, match="There is no disk called"):
        probe_disk("sdzz")


def test_list_disks(attached: Attached) -> None:
    node = attached.disk("list.img", 32 * MiB, script=f"label: gpt\ntype={LINUX}\n")
    _sh("mkfs.ext4", "-q", "-L", "listed", f"{node}p1")
    with_loops = {disk.node: disk for disk in list_disks(include_loop=True)}
    assert with_loops[node] == probe_disk(node)
    assert with_loops[node].partitions[0].label == "listed"
    without = list_disks()
    assert all(not disk.is_loop for disk in without)
    assert node not in {disk.node for disk in without}


def test_stale_kernel_partitions_are_resynced(attached: Attached) -> None:
    node = attached.disk(
        "stale.img",
        64 * MiB,
        script=(f"label: gpt\nstart=2048, size=16384, type={LINUX}\nsize=16384, type={LINUX}\n"),
    )
    assert sysfs_start(f"{node}p1") == 2048 * 512
    _sh(
        "sfdisk",
        "-q",
        "--no-reread",
        "--no-tell-kernel",
        node,
        stdin=f"label: gpt\nstart=8192, size=16384, type={LINUX}\n",
    )  # same size, moved
    disk = probe_disk(node)
    assert disk.partitions[0].node == ""  # the kernel's p1 is not where the table puts it
    sync_partitions(disk)
    assert sysfs_start(f"{node}p1") == 8192 * 512
    assert not Path(f"/sys/block/{Path(node).name}/{Path(node).name}p2").exists()
    assert probe_disk(node).partitions[0].node == f"{node}p1"
    with pytest.raises(DeviceError, match="has no partition 3"):
        partition_node(disk, 3)


def test_leftover_partition_over_a_new_one_is_dropped(attached: Attached) -> None:
    """A loop device reattached to another image keeps the partitions partx gave the last
    one (this kernel has no table parser); one that overlaps the new table's partition 2
    made the save stop with 'cannot be updated'."""
    node = attached.disk(
        "leftover.img",
        64 * MiB,
        script=f"label: gpt\nstart=2048, size=8192, type={LINUX}\nsize=32768, type={LINUX}\n",
    )
    name = Path(node).name
    _sh("partx", "-d", "--nr", "2", node)
    _sh("addpart", node, "3", "20480", "8192")  # the last image's p3: inside the new p2
    disk = probe_disk(node)
    assert partition_node(disk, 2) == f"{node}p2"
    assert sysfs_start(f"{node}p2") == 10240 * 512
    assert not Path(f"/sys/block/{name}/{name}p3").exists()
    assert partition_node(disk, 1) == f"{node}p1"  # in its place: left as it is
    _sh("partx", "-d", "--nr", "2", node)
    _sh("addpart", node, "3", "20480", "8192")
    in_use = open(f"{node}p3", "rb")  # noqa: SIM115 - the kernel refuses to delete it
    with in_use, pytest.raises(DeviceError, match=r"partition 3 .* cannot be updated"):
        partition_node(probe_disk(node), 2)
    assert Path(f"/sys/block/{name}/{name}p3").exists()


def test_a_source_without_its_kernel_partitions_is_probed_with_them(attached: Attached) -> None:
    """A loop device attached without a partition scan has no partition nodes on this kernel:
    probe_disk sees no filesystem on them (and a save copied each whole, as unformatted);
    probe_source tells the kernel the table first, so the filesystems are seen."""
    node = attached.disk(
        "bare.img",
        96 * MiB,
        script=f"label: gpt\nstart=2048, size=65536, type={LINUX}\ntype={LINUX}\n",
    )
    _sh("mkfs.ext4", "-q", "-L", "one", f"{node}p1")
    _sh("mkfs.fat", "-n", "TWO", f"{node}p2")
    _sh("partx", "-d", node)
    bare = probe_disk(node)
    assert [(p.node, p.fstype) for p in bare.partitions] == [("", None), ("", None)]
    disk = probe_source(node)
    assert [(p.node, p.fstype, p.label) for p in disk.partitions] == [
        (f"{node}p1", "ext4", "one"),
        (f"{node}p2", "vfat", "TWO"),
    ]
    _sh("partx", "-d", "--nr", "2", node)
    _sh("addpart", node, "2", "100000", "8192")  # stale: elsewhere than the table says
    assert probe_disk(node).partitions[1].fstype is None
    assert probe_source(node).partitions[1].fstype == "vfat"
    assert sysfs_start(f"{node}p2") == 67584 * 512


def test_disks_command_json_and_text(attached: Attached) -> None:
    node = attached.disk("cmd.img", 32 * MiB, script=f"label: gpt\ntype={LINUX}, name=cmd\n")
    _sh("mkfs.ext4", "-q", "-L", "cmdfs", f"{node}p1")
    out = io.StringIO()
    assert run_disks(True, True, out) == 0
    data = json.loads(out.getvalue())
    ours = next(d for d in data["disks"] if d["node"] == node)
    assert set(ours) == {
        "name",
        "node",
        "model",
        "serial",
        "size",
        "logical_sector",
        "physical_sector",
        "removable",
        "readonly",
        "is_loop",
        "backing_file",
        "table",
        "table_id",
        "filesystem",
        "incomplete",
        "boot_stick",
        "partitions",
    }
    assert ours["incomplete"] is None and ours["boot_stick"] is False
    assert data["boot_medium"] is None  # this machine did not boot from a live medium
    row = sfdisk(node)["partitions"][0]
    part = ours["partitions"][0]
    assert (part["start"], part["size"]) == (row["start"] * 512, row["size"] * 512)
    assert part["end"] == part["start"] + part["size"]
    assert (part["guid"], part["name"]) == (row["uuid"].lower(), "cmd")
    assert (part["fstype"], part["label"], part["uuid"]) == (
        "ext4",
        "cmdfs",
        blkid(f"{node}p1", "UUID"),
    )
    text = io.StringIO()
    run_disks(True, False, text)
    assert Path(node).name in text.getvalue() and "cmdfs" in text.getvalue()
    text = io.StringIO()
    run_disks(False, False, text)
    assert node not in text.getvalue()


def test_kernel_partitions_set_without_a_table(attached: Attached) -> None:
    """A restore tells the kernel all its partitions at once while the disk holds no valid
    table yet; each node exists when the call returns, at the start it was given."""
    node = attached.disk("blank.img", 64 * MiB)
    disk = probe_disk(node)
    parts = [(1, 1 * MiB, 8 * MiB), (2, 9 * MiB, 16 * MiB), (3, 25 * MiB, 30 * MiB)]
    nodes = set_kernel_partitions(disk, parts)
    assert nodes == {n: f"{node}p{n}" for n, _, _ in parts}
    for number, start, _size in parts:
        assert os.path.exists(nodes[number])
        assert sysfs_start(nodes[number]) == start
    # again with partition 2 moved and 3 gone: the kernel's view follows
    nodes = set_kernel_partitions(disk, [(1, 1 * MiB, 8 * MiB), (2, 10 * MiB, 16 * MiB)])
    assert sysfs_start(nodes[2]) == 10 * MiB
    assert not Path(f"/sys/block/{Path(node).name}/{Path(node).name}p3").exists()


def test_target_rechecked_before_the_first_write(attached: Attached) -> None:
    """The probe just before a restore's first write: the same disk gives its table, and a
    disk that grew (or was swapped for another size) since the plan stops the job."""
    node = attached.disk(
        "used.img",
        96 * MiB,
        script=f"label: gpt\nstart=2048, size={64 * MiB // 512}, type={LINUX}\n",
    )
    _sh("mkfs.ext4", "-q", "-L", "old", f"{node}p1")
    planned = probe_disk(node)
    again = recheck_target(planned)
    assert (again.devnum, again.size) == (planned.devnum, planned.size)
    assert [(p.number, p.start, p.size) for p in again.partitions] == [(1, MiB, 64 * MiB)]
    os.truncate(attached.loops[node], 128 * MiB)
    _sh("losetup", "-c", node)
    with pytest.raises(SafetyRefusal, match="changed since the plan"):
        recheck_target(planned)

"""The table a Clonezilla restore writes: the folder's sfdisk dump (captured from Debian
12's ocs-sr, tests/unit/shelf/data/clonezilla) as sfdisk --json names it, last-lba left out,
turned into the sfdisk script plan/table.py runs for a larger target."""

from __future__ import annotations

from pathlib import Path

from appliance.plan.fit import SourcePart, fit
from appliance.plan.table import script
from appliance.shelf.clonezilla import find_folder, load

DATA = Path(__file__).parents[1] / "shelf" / "data" / "clonezilla"
MiB = 1024 * 1024


def test_gpt_dump_without_last_lba_fits_a_larger_disk() -> None:
    img = load(DATA / "gptimg")
    disk = img.disks[0]
    table = disk.sfdisk_json(img.name)
    assert "lastlba" not in table and table["firstlba"] == 2048
    assert table["id"] == "A3147DD3-508A-4510-888B-E474CCC23F61"
    assert table["partitions"][1]["attrs"] == "LegacyBIOSBootable"
    parts = [
        SourcePart(p.number, "primary", p.type, p.start, p.size, p.fstype) for p in disk.partitions
    ]
    plan = fit(parts, table="gpt", source_size=500 * MiB, target_size=700 * MiB, sector=512)
    text = script(table, plan, "/dev/sdz")
    assert "last-lba" not in text
    lines = text.splitlines()
    assert lines[:2] == ["label: gpt", "label-id: A3147DD3-508A-4510-888B-E474CCC23F61"]
    p3 = next(line for line in lines if line.startswith("/dev/sdz3 "))
    # the NTFS partition takes the room up to the last whole MiB before the backup GPT
    # (699 MiB), the swap after it moving along: 150 MiB + (699 - 447) MiB
    assert f"size={402 * MiB // 512}," in p3
    assert 'name="Basic data partition"' in p3


def test_mbr_dump_keeps_bootable_and_logicals() -> None:
    img = load(DATA / "mbrimg")
    table = img.disks[0].sfdisk_json(img.name)
    assert table["label"] == "dos" and table["id"] == "0x994decd2"
    assert [(p["node"], p["type"], p["bootable"]) for p in table["partitions"]] == [
        ("/dev/loop0p1", "83", True),
        ("/dev/loop0p2", "5", False),
        ("/dev/loop0p5", "83", False),
        ("/dev/loop0p6", "da", False),
    ]


def test_find_folder(tmp_path: Path) -> None:
    assert find_folder(str(DATA), "mbrimg") == DATA / "mbrimg"
    assert find_folder(str(DATA / "mbrimg"), "mbrimg") == DATA / "mbrimg"
    assert find_folder(str(DATA), "nothing") is None
    assert find_folder(str(DATA), "../clonezilla/mbrimg") is None
    (tmp_path / "repo.json").write_text("{}")
    (tmp_path / "images" / "mbrimg").mkdir(parents=True)
    assert find_folder(str(tmp_path), "mbrimg") is None  # our own image of that name wins

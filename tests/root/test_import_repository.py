"""import from another repository: a real disk saved to a USB-drive repository is imported
into the office's repository, deduplicated, and restores to a disk equal to its source; a
damaged chunk on the way stops the import with nothing offered for restore."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.cli import appliance, chunk_files, image_chunks, refused, result_json
from kit.diskbuild import GPT_DISK_SIZE, sparse_file
from kit.diskcompare import assert_equivalent
from kit.saved import Saved, saved_gpt_disk

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def usb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Saved]:
    with saved_gpt_disk(tmp_path_factory.mktemp("import"), image="laptop") as saved:
        yield saved


def test_imported_image_restores_to_a_disk_equal_to_its_source(usb: Saved) -> None:
    office = usb.folder / "office"
    out = result_json(
        appliance("import", "--repo", str(office), "--from", str(usb.repo), "--create", "--json")
    )
    [done] = out["images"]
    assert done["image"] == "laptop" and done["new_chunks"] > 0
    assert image_chunks(office, "laptop") == image_chunks(usb.repo, "laptop")
    # the same manifest facts: disk, table, regions with their proofs
    old = json.loads((usb.repo / "images/laptop/manifest.json").read_text())
    new = json.loads((office / "images/laptop/manifest.json").read_text())
    assert new["disk"] == old["disk"] and new["table"] == old["table"] and new["complete"]
    assert [r["proof"] for r in new["regions"]] == [r["proof"] for r in old["regions"]]
    appliance("verify", "--repo", str(office), "--image", "laptop")

    target = usb.loops.attach(sparse_file(usb.folder, "target.img", GPT_DISK_SIZE))
    appliance("restore", "--repo", str(office), "--image", "laptop", target, "--yes")
    assert_equivalent(usb.source, target, same_size=True)
    usb.loops.detach(target)


def test_a_second_import_stores_nothing_new(usb: Saved) -> None:
    office = usb.folder / "office2"
    appliance("import", "--repo", str(office), "--from", str(usb.repo), "--create")
    before = chunk_files(office)
    proc = appliance(
        "import", "--repo", str(office), "--from", str(usb.repo), "--image", "laptop",
        "--as", "laptop-again",
    )  # fmt: skip
    assert "Imported image laptop of the repository" in " ".join(proc.stdout.split())
    assert "0 new chunks" in proc.stdout
    assert chunk_files(office) == before
    names = {
        i["name"]
        for i in result_json(appliance("images", "--repo", str(office), "--json"))["images"]
    }
    assert names == {"laptop", "laptop-again"}
    again = appliance(
        "import", "--repo", str(office), "--from", str(usb.repo), "--image", "laptop", check=False
    )
    refused(again, 8, "already in")


def test_a_damaged_chunk_stops_the_import_and_nothing_is_offered(usb: Saved) -> None:
    broken = usb.folder / "broken"
    appliance("import", "--repo", str(broken), "--from", str(usb.repo), "--create")
    # flip a byte inside one stored chunk of the copy, then import from the copy
    victim = sorted((broken / "chunks").glob("*/*/*"))[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    office = usb.folder / "office3"
    proc = appliance(
        "import", "--repo", str(office), "--from", str(broken), "--create", check=False
    )
    refused(proc, 9, "laptop")
    images = result_json(appliance("images", "--repo", str(office), "--json"))["images"]
    assert images and not any(i["restorable"] for i in images)


def test_what_cannot_be_imported_is_one_sentence(usb: Saved, tmp_path: Path) -> None:
    empty = tmp_path / "nothing"
    empty.mkdir()
    refused(
        appliance("import", "--repo", str(tmp_path / "r"), "--from", str(empty), check=False),
        8,
        "holds no images this appliance can import",
    )
    refused(
        appliance("import", "--repo", "ftp://server/images", "--from", str(usb.repo), check=False),
        6,
        "ftp:// address",
    )
    assert not (tmp_path / "r").exists()

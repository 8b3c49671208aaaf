"""A manifest carries its own hash: written by to_json, checked by from_json when present."""

import json

import pytest

from appliance.errors import CorruptData, ImageError
from appliance.repo.manifest import Manifest, Region
from appliance.repo.records import DiskRecord, SaveStats


def manifest() -> Manifest:
    return Manifest(
        name="m",
        disk=DiskRecord("sdz", "/dev/sdz", 1 << 20),
        table=None,
        regions=[Region("outside", None, 0, 1 << 20, "raw")],
        created="2026-01-01T00:00:00+0000",
        tool_version="1",
        complete=True,
        stats=SaveStats(seconds=1.25, warnings=["a", "b"]),
    )


def test_round_trip_keeps_the_hash_valid() -> None:
    text = manifest().to_json()
    assert len(json.loads(text)["manifest_hash"]) == 64
    loaded = Manifest.from_json(text, "m.json")
    assert loaded.figures.warnings == ["a", "b"] and loaded.to_json() == text


def test_an_edited_manifest_is_refused() -> None:
    data = json.loads(manifest().to_json())
    data["regions"][0]["size"] += 512
    with pytest.raises(CorruptData, match="does not match its own hash"):
        Manifest.from_json(json.dumps(data), "m.json")


def test_the_hash_does_not_depend_on_layout() -> None:
    data = json.loads(manifest().to_json())
    assert Manifest.from_json(json.dumps(data, sort_keys=True), "m.json").name == "m"


def test_an_old_manifest_without_a_hash_still_loads() -> None:
    data = json.loads(manifest().to_json())
    del data["manifest_hash"]
    assert Manifest.from_json(json.dumps(data), "m.json").complete


@pytest.mark.parametrize("text", ["", "{", "[]", '{"format": "appliance-image"}'])
def test_truncated_or_foreign_text_is_one_sentence(text: str) -> None:
    with pytest.raises(ImageError):
        Manifest.from_json(text, "m.json")

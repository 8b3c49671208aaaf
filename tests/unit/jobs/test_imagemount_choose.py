"""Which partition a mount takes: the one named, or the only one that can be mounted; a
sentence that lists the choices when there are several, and says why a named one cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import UsageError
from appliance.jobs import imagemount
from appliance.jobs.imagemount import ImageRef, PartitionChoice, choose, partitions_of

CLONEZILLA = Path(__file__).parents[1] / "shelf" / "data" / "clonezilla"  # captured folders

REF = ImageRef(repo="/r", image="laptop")
ESP = PartitionChoice(1, "vfat", 100 << 20, "ESP", True, None)
ROOT = PartitionChoice(2, "ext4", 20 << 30, "root", True, None)
SWAP = PartitionChoice(3, "swap", 1 << 30, None, False, "It is swap space, which holds no files.")


def given(monkeypatch: pytest.MonkeyPatch, *choices: PartitionChoice) -> None:
    monkeypatch.setattr(imagemount, "partitions_of", lambda ref: list(choices))


def test_the_only_mountable_partition_is_taken_without_asking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given(monkeypatch, ROOT, SWAP)
    assert choose(REF, None) == ROOT


def test_several_mountable_partitions_are_listed_in_one_sentence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given(monkeypatch, ESP, ROOT, SWAP)
    with pytest.raises(UsageError) as caught:
        choose(REF, None)
    text = str(caught.value)
    assert "partition 1 (vfat, ESP)" in text and "partition 2 (ext4, root)" in text
    assert "--partition N" in text and "swap" not in text


def test_a_named_partition_that_cannot_be_mounted_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given(monkeypatch, ESP, ROOT, SWAP)
    with pytest.raises(
        UsageError, match="Partition 3 of image laptop cannot be mounted: It is swap"
    ):
        choose(REF, 3)
    with pytest.raises(UsageError, match=r"has no partition 7 \(partitions: 1, 2, 3\)"):
        choose(REF, 7)
    assert choose(REF, 1) == ESP


def test_an_image_with_nothing_to_mount_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    lvm = PartitionChoice(5, "LVM2_member", 1 << 30, None, False, "It is an LVM volume.")
    given(monkeypatch, SWAP, lvm)
    with pytest.raises(UsageError, match="no partition whose files can be read"):
        choose(ImageRef(file="/x/disk.qcow2"), None)
    given(monkeypatch, SWAP)  # one reason for all: that reason
    with pytest.raises(UsageError, match=r"disk\.qcow2 cannot be mounted: It is swap space"):
        choose(ImageRef(file="/x/disk.qcow2"), None)


def test_a_clonezilla_images_partitions_are_listed_and_say_why_they_do_not_mount() -> None:
    ref = ImageRef(repo=str(CLONEZILLA), image="gptimg")
    choices = partitions_of(ref)
    assert [(c.number, c.fstype) for c in choices] == [
        (1, "vfat"),
        (2, "ext4"),
        (3, "ntfs"),
        (4, "swap"),
    ]
    assert not any(c.mountable for c in choices)
    assert all("can only be read from their start" in (c.reason or "") for c in choices)
    with pytest.raises(UsageError, match="Image gptimg cannot be mounted: Clonezilla's"):
        choose(ref, None)

"""Before a save: where it may write and whether it fits; a reused chunk reads back."""

import os
from pathlib import Path

import pytest

from appliance.disk.usage import filesystem_type, mounted_readonly, mounts
from appliance.errors import RepositoryError
from appliance.jobs.savechecks import DEFAULT_RATIO, compression_ratio
from appliance.repo.chunk import HEADER, MAGIC, RAW, VERSION, Encoder, content_hash
from appliance.repo.manifest import Manifest
from appliance.repo.records import DiskRecord, SaveStats
from appliance.repo.repository import ReadBack, Repository, check_save_place

MOUNTINFO = """\
22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:25 / /run/live/ram rw,nosuid shared:5 - tmpfs tmpfs rw,size=100k
31 22 7:3 / /media/usb ro,relatime shared:6 - ext4 /dev/loop3 ro
32 22 7:3 / /media/again rw,relatime shared:7 - ext4 /dev/loop3 rw
"""


def test_mountinfo_is_read_with_options_and_types() -> None:
    found = mounts(MOUNTINFO)
    assert [(m.devnum, m.point, m.fstype) for m in found] == [
        ((252, 0), "/", "ext4"),
        ((0, 25), "/run/live/ram", "tmpfs"),
        ((7, 3), "/media/usb", "ext4"),
        ((7, 3), "/media/again", "ext4"),
    ]
    assert found[2].options[0] == "ro"


def test_the_type_of_the_filesystem_that_holds_a_path(tmp_path: Path) -> None:
    dev = os.stat(tmp_path).st_dev
    fake = f"40 1 {os.major(dev)}:{os.minor(dev)} / / rw - tmpfs tmpfs rw\n"
    assert filesystem_type(tmp_path / "not" / "yet", fake) == "tmpfs"
    assert filesystem_type(tmp_path, "") is None


def test_mounted_read_only_means_every_mount_of_it_is_read_only() -> None:
    rdev = os.stat("/dev/null").st_rdev  # any device node stands in for a partition
    num = f"{os.major(rdev)}:{os.minor(rdev)}"
    ro = f"50 1 {num} / /media/a ro,relatime - ext4 /dev/x ro\n"
    rw = f"51 1 {num} / /media/b rw,relatime - ext4 /dev/x rw\n"
    assert mounted_readonly("/dev/null", ro)
    assert not mounted_readonly("/dev/null", ro + rw)
    assert not mounted_readonly("/dev/null", MOUNTINFO)  # not mounted at all


def test_a_repository_is_created_only_when_asked(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="add --create to make one"):
        check_save_place(tmp_path / "repo")
    with pytest.raises(RepositoryError, match="add --create"):
        Repository.open_for_save(tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
    Repository.open_for_save(tmp_path / "repo", create=True)
    assert Repository.open_for_save(tmp_path / "repo").root == tmp_path / "repo"


def test_ram_is_refused_unless_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("appliance.repo.places.filesystem_type", lambda path: "tmpfs")
    with pytest.raises(RepositoryError, match="lost at power off"):
        check_save_place(tmp_path / "repo", create=True)
    check_save_place(tmp_path / "repo", create=True, allow_ram=True)


def image(new: int, reused: int, new_bytes: int, used: int) -> Manifest:
    stats = SaveStats(used_bytes=used, new_bytes=new_bytes, new_chunks=new, reused_chunks=reused)
    disk = DiskRecord("sda", "/dev/sda", 1 << 30)
    return Manifest("m", disk, None, [], "now", "test", complete=True, stats=stats)


def test_the_ratio_is_learnt_from_first_saves_only() -> None:
    assert compression_ratio([]) == DEFAULT_RATIO
    first = image(100, 0, 300, 1000)
    incremental = image(2, 98, 6, 1000)  # says nothing about compression
    assert compression_ratio([first, incremental]) == pytest.approx(0.3)
    assert compression_ratio([incremental]) == DEFAULT_RATIO


def test_a_stored_chunk_is_reused_only_if_it_reads_back(tmp_path: Path) -> None:
    repo = Repository.open_or_create(tmp_path / "r")
    reader = ReadBack()
    data = b"a window of data " * 4096
    name = content_hash(data)
    assert repo.stored_chunk_state(name, len(data), reader) == "missing"
    repo.put_chunk(name, Encoder().encode(data))
    assert repo.stored_chunk_state(name, len(data), reader) == "same"
    path = repo.chunk_path(name)
    good = path.read_bytes()
    blob = bytearray(good)
    blob[-3] ^= 0xFF  # same length: has_chunk still trusts it
    path.write_bytes(bytes(blob))
    assert repo.has_chunk(name)
    assert repo.stored_chunk_state(name, len(data), reader) == "damaged"
    path.write_bytes(good[:-1])  # truncated
    assert repo.stored_chunk_state(name, len(data), reader) == "damaged"
    longer = Encoder().encode(data + b"x")  # a frame that holds more than the window
    path.write_bytes(longer)
    assert repo.stored_chunk_state(name, len(data), reader) == "damaged"
    raw = os.urandom(8192)  # incompressible: stored raw
    repo.put_chunk(content_hash(raw), Encoder().encode(raw))
    assert repo.stored_chunk_state(content_hash(raw), len(raw), reader) == "same"
    assert repo.stored_chunk_state(name, len(data), reader) == "damaged"  # buffers reused


def test_a_stored_chunk_must_decode_to_the_whole_window(tmp_path: Path) -> None:
    """The stored chunk must decode to the window's own bytes, whole: a chunk file of the
    same size holding other bytes (swapped for another's), one byte short or one byte long
    is damaged, compressed or stored raw."""
    repo = Repository.open_or_create(tmp_path / "r")
    reader = ReadBack()
    window = bytearray(b"system files " * 80_000)  # a megabyte
    name = content_hash(window)
    path = repo.chunk_path(name)
    other = bytearray(window)
    other[-5] ^= 0x01  # near its end, same length
    for stored, verdict in (
        (window, "same"),
        (other, "damaged"),
        (window[:-1], "damaged"),
        (window + b"\0", "damaged"),
    ):
        repo.put_chunk(name, Encoder().encode(bytes(stored)))
        assert repo.stored_chunk_state(name, len(window), reader) == verdict
        path.write_bytes(raw_chunk(bytes(stored)))  # the same, stored raw
        assert repo.stored_chunk_state(name, len(window), reader) == verdict


def raw_chunk(data: bytes) -> bytes:
    """A chunk file holding `data` uncompressed (what a save stores for incompressible data)."""
    return HEADER.pack(MAGIC, VERSION, RAW, len(data)) + data

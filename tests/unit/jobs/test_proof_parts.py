"""The parts of a save's proof that need no disk: window counting, verdict words,
warning lines, and manifests written before proofs existed."""

from __future__ import annotations

import json
import threading

import pytest

from appliance.io.pipeline import Window
from appliance.jobs.catalog import proof_word
from appliance.jobs.proof import NO_CHECK, WindowCounter, proof_warnings, skip_all
from appliance.repo.manifest import Manifest, Region


def region(name: str, method: str, used: int, fstype: str | None = "ext4") -> Region:
    number = None if name == "outside" else int(name[1:])
    return Region(name, number, 0, 1 << 30, method, fstype=fstype, used_bytes=used)


def window(region: int, number: int) -> Window:
    return Window(region, number, 0, 4096, ((0, 4096),))


def test_a_region_is_done_after_its_last_window_only() -> None:
    done: list[int] = []
    counter = WindowCounter({0: 2, 1: 1, 2: 0}, done.append)
    assert done == [2]  # nothing to move: done at once
    seen: list[tuple[int, int]] = []
    work = counter.wrap(lambda win, data: seen.append((win.region, win.number)))
    work(window(0, 0), memoryview(b""))
    work(window(1, 0), memoryview(b""))
    assert done == [2, 1]
    work(window(0, 1), memoryview(b""))
    assert done == [2, 1, 0]
    assert seen == [(0, 0), (1, 0), (0, 1)]


def test_a_window_that_fails_does_not_count() -> None:
    done: list[int] = []

    def fail(win: Window, data: memoryview) -> None:
        raise OSError("unreadable")

    work = WindowCounter({0: 1}, done.append).wrap(fail)
    with pytest.raises(OSError):
        work(window(0, 0), memoryview(b""))
    assert done == []


def test_windows_counted_from_many_threads() -> None:
    done: list[int] = []
    counter = WindowCounter({0: 400}, done.append)
    work = counter.wrap(lambda win, data: None)
    threads = [
        threading.Thread(target=lambda: [work(window(0, n), memoryview(b"")) for n in range(100)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert done == [0]


def test_no_check_marks_only_mapped_regions_skipped() -> None:
    regions = [region("outside", "table", 1, None), region("p1", "partclone", 5, "xfs")]
    skip_all(regions)
    assert regions[0].proof is None
    assert regions[1].proof == {
        "tool": "xfs_repair -n",
        "result": "skipped",
        "seconds": 0.0,
        "detail": NO_CHECK,
    }


def proven(name: str, result: str, source: str | None = None) -> Region:
    found = region(name, "partclone" if result != "failed" else "raw", 5)
    found.proof = {"tool": "e2fsck -fn", "result": result, "seconds": 0.1, "detail": None}
    if source:
        found.proof["source"] = source
    return found


def test_the_word_images_shows() -> None:
    raw = region("p9", "raw", 5, None)
    assert proof_word([raw, proven("p1", "passed")]) == "proven"
    assert proof_word([proven("p1", "passed"), proven("p2", "failed", "passed")]) == "proven"
    assert proof_word([proven("p1", "passed"), proven("p2", "skipped")]) == "unproven"
    assert proof_word([region("p1", "partclone", 5)]) == "unproven"  # an older image
    assert proof_word([proven("p1", "passed"), proven("p2", "failed", "failed")]) == "fs errors"


def test_one_warning_line_per_partition_that_is_not_proven() -> None:
    skipped = proven("p3", "skipped")
    assert skipped.proof is not None
    skipped.proof["detail"] = "The program fsck.exfat is missing."
    no_check = proven("p4", "skipped")
    assert no_check.proof is not None
    no_check.proof["detail"] = NO_CHECK
    lines = proof_warnings(
        [
            proven("p1", "failed", "passed"),
            proven("p2", "failed", "failed"),
            skipped,
            no_check,
            proven("p5", "passed"),
        ]
    )
    assert len(lines) == 3
    assert lines[0].startswith("partition 1 (ext4): e2fsck -fn failed on the image")
    assert "saved again whole" in lines[0]
    assert lines[1].startswith("partition 2 (ext4): e2fsck -fn finds errors on the source")
    assert "fsck.exfat is missing" in lines[2]


def test_a_manifest_without_proofs_still_loads() -> None:
    old = {
        "format": "appliance-image",
        "version": 1,
        "name": "old",
        "complete": True,
        "created": "2026-01-01T00:00:00+0000",
        "finished": None,
        "tool_version": "0.1.0",
        "disk": {"size": 1},
        "table": None,
        "stats": {},
        "regions": [{"name": "p1", "partition": 1, "start": 0, "size": 1, "method": "partclone"}],
    }
    manifest = Manifest.from_json(json.dumps(old), "old/manifest.json")
    assert manifest.regions[0].proof is None
    again = Manifest.from_json(manifest.to_json(), "again")
    assert again.regions[0].proof is None

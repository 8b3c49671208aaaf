"""Time grows with used bytes, not with the disk's size: the 8 GiB bench disk against the same
data on a 256 GiB sparse disk, saved and restored in interleaved rounds, each after a dropped
page cache, each save into a new repository and each restore onto a new sparse target.

The 256 GiB disk is the 8 GiB one cloned by the appliance with its ext4 grown to fill it
(`appliance clone --grow 2`: resize2fs adds the groups, and their inode tables, a freshly
made filesystem of that size has); it is kept in the disk cache beside the 8 GiB one.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.build import DiskImage
from bench.jobs import appliance, appliance_env, attach, blank_target, our_restore, our_save
from bench.measure import Run
from bench.sh import Loops, log, run

GiB = 1 << 30
HUGE = 256 * GiB
TARGET = 1.10  # the larger disk's time against the smaller's, at most


def huge_image(big: DiskImage, loops: Loops, work: Path) -> DiskImage:
    """The 256 GiB disk holding `big`'s data (built once, kept beside it)."""
    path = big.path.with_name("huge-256g.img")
    if path.exists() and path.with_suffix(".json").exists():
        return DiskImage.load(path)
    log(f"building huge-256g from {big.name} (appliance clone --grow 2)")
    tmp = path.with_suffix(".img.tmp")
    with open(tmp, "wb") as handle:
        handle.truncate(HUGE)
    source = loops.attach(big.path, read_only=True, direct_io=True)
    target = loops.attach(tmp, direct_io=True)
    try:
        run(appliance("clone", source.node, target.node, "--yes", "--grow", "2",
                      "--progress", "none"), env=appliance_env(work))  # fmt: skip
        table = json.loads(run(["sfdisk", "--json", target.node]).stdout)["partitiontable"]
    finally:
        loops.detach(source)
        loops.detach(target)
    sector = int(table.get("sectorsize", 512))
    parts = []
    for spec, entry in zip(big.parts, table["partitions"], strict=True):
        parts.append(
            replace(spec, start=int(entry["start"]) * sector, size=int(entry["size"]) * sector)
        )
    image = DiskImage("huge-256g", path, HUGE, parts, dict(big.content), rootfs=big.rootfs)
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(image.to_json())
    return image


def measure(big: DiskImage, loops: Loops, work: Path, rounds: int) -> dict[str, Any]:
    """Save and restore times of both disks, and the ratios of their medians."""
    huge = huge_image(big, loops, work)
    disks = {"8 GiB": attach(loops, big), "256 GiB": attach(loops, huge)}
    runs: dict[str, dict[str, list[Run]]] = {k: {"save": [], "restore": []} for k in disks}
    try:
        for number in range(1, rounds + 1):
            for label, disk in disks.items():
                repo = work / "repo-size"
                shutil.rmtree(repo, ignore_errors=True)
                r, _ = our_save(disk, repo, "size", work, f"appliance save {label} {number}")
                runs[label]["save"].append(r)
                target = blank_target(loops, work / "target-size.img", disk.image.size)
                name = f"appliance restore {label} {number}"
                try:
                    runs[label]["restore"].append(our_restore(repo, "size", target, work, name))
                finally:
                    loops.detach(target)
                    (work / "target-size.img").unlink()
                    shutil.rmtree(repo, ignore_errors=True)
    finally:
        for disk in disks.values():
            loops.detach(disk.loop)
    out: dict[str, Any] = {"used_bytes": {k: d.used_bytes for k, d in disks.items()}}
    for job in ("save", "restore"):
        small = statistics.median(r.seconds for r in runs["8 GiB"][job])
        large = statistics.median(r.seconds for r in runs["256 GiB"][job])
        out[job] = {
            "8 GiB": small,
            "256 GiB": large,
            "ratio": large / small,
            "seconds": {k: [round(r.seconds, 3) for r in v[job]] for k, v in runs.items()},
            "peak_rss": {k: max(r.peak_rss for r in v[job]) for k, v in runs.items()},
        }
    return out

"""A home disk of already-compressed data (issue 15's row): photos, videos and archives, which
no compressor makes smaller. The save must not spend both cores trying to compress it: it is
judged against the O_DIRECT read of its used data, the limit when compression costs little.

    home-4g   a 4 GiB GPT: a FAT32 ESP (260 MiB, a kernel-sized blob and text) and an NTFS
              data partition with about 60 % of it in use: 70 % random bytes (photos, video,
              an encrypted container), 25 % deflate streams (zip archives), 5 % documents;
              a quarter of the free space holds deleted files.

Built once into the same cache as bench/build.py's disks, in a folder keyed by the hash of
this file (a change to bench/build.py does not rebuild it, nor the other way round).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.build import (
    ESP_TYPE,
    MS_BASIC_DATA_TYPE,
    Content,
    DiskImage,
    GiB,
    KiB,
    MiB,
    PartSpec,
    sfdisk_script,
    stale,
    text_corpus,
    used_bytes,
)
from bench.jobs import attach, cz_save, cz_size, machine_limits, our_save, raw_read, tree_bytes
from bench.measure import Run
from bench.sh import MTOOLS_ENV, Loops, log, mounted, partition_node, run

KEY = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
NAME = "home-4g"
SIZE = 4 * GiB
USED = 0.60  # of the data partition
MIX = {
    "Pictures": ("random", 0.45),
    "Videos": ("random", 0.25),
    "Archives": ("compressed", 0.25),
    "Documents": ("text", 0.05),
}


def layout(size: int) -> list[PartSpec]:
    esp_start, esp_size = 1 * MiB, 260 * MiB
    data_start = esp_start + esp_size
    data_size = (size - MiB - data_start) // MiB * MiB
    return [
        PartSpec(1, "vfat", "EFI", esp_start, esp_size, ESP_TYPE, "EFI system partition"),
        PartSpec(2, "ntfs", "Home", data_start, data_size, MS_BASIC_DATA_TYPE, "Home"),
    ]


def home_disk(cache: Path, loops: Loops) -> DiskImage:
    """The home disk, built if the cache does not hold it yet."""
    folder = cache / f"home-{KEY}"
    for old in cache.glob("home-*"):
        if old != folder and old.is_dir():
            log(f"removing a home disk of an older builder: {old}")
            shutil.rmtree(old)
    path = folder / f"{NAME}.img"
    if path.exists() and path.with_suffix(".json").exists():
        return DiskImage.load(path)
    folder.mkdir(parents=True, exist_ok=True)
    return _build(folder, path, loops)


def _build(folder: Path, path: Path, loops: Loops) -> DiskImage:
    started = time.monotonic()
    log(f"building {NAME} (already-compressed data) in {folder}")
    tmp = path.with_suffix(".img.tmp")
    with open(tmp, "wb") as handle:
        handle.truncate(SIZE)
    parts = layout(SIZE)
    image = DiskImage(NAME, path, SIZE, parts, rootfs="none: a data disk")
    loop = loops.attach(tmp, direct_io=False)
    mnt = folder / f"mnt-{os.getpid()}"
    try:
        run(
            ["sfdisk", "--no-reread", "--no-tell-kernel", "-q", loop.node],
            stdin=sfdisk_script(parts, 44).encode(),
        )
        loops.rescan(loop)
        esp, data = parts
        esp_node, data_node = (partition_node(loop.node, p.number) for p in parts)
        run(["mkfs.fat", "-F", "32", "-n", esp.label, esp_node])
        run(["mkfs.ntfs", "-Q", "-F", "-q", "-L", data.label, data_node])
        content = Content(text_corpus([Path("/usr/share/doc"), Path("/usr/lib/python3")]), 44)
        staging = folder / f"esp-{os.getpid()}"
        content.write(staging / "EFI" / "BOOT" / "BOOTX64.EFI", "compressed", 24 * MiB)
        content.write(staging / "EFI" / "BOOT" / "grub.cfg", "text", 4 * KiB)
        run(["mcopy", "-s", "-m", "-i", esp_node, str(staging / "EFI"), "::/"], env=MTOOLS_ENV)
        shutil.rmtree(staging)
        with mounted(data_node, mnt / "data", "ntfs") as root:
            content.fill(root, int(USED * data.size) - used_bytes(root), MIX)
            stale(root, content, int(0.25 * (data.size - used_bytes(root))))
        image.content = dict(content.written)
    finally:
        loops.detach(loop)
        shutil.rmtree(mnt, ignore_errors=True)
    os.replace(tmp, path)
    image.build_seconds = round(time.monotonic() - started, 1)
    path.with_suffix(".json").write_text(image.to_json())
    log(f"{NAME} built in {image.build_seconds:.0f} s")
    return image


def measure(cache: Path, loops: Loops, work: Path, rounds: int, cores: int) -> dict[str, Any]:
    """Each round: the raw read and the compression limit of the home disk's used data,
    Clonezilla's save, then ours into a new repository."""
    image = home_disk(cache, loops)
    disk = attach(loops, image)
    used = disk.used_bytes
    runs: dict[str, list[Run]] = {"raw_read": [], "cz_save": [], "our_save": []}
    limits: list[dict[str, float]] = []
    sizes: dict[str, list[int]] = {"ours": [], "cz": []}
    try:
        for number in range(1, rounds + 1):
            runs["raw_read"].append(raw_read(disk, work, f"home raw read {number}"))
            limits.append(machine_limits(disk, None, work))
            cz = work / f"home-clonezilla-{number}"
            runs["cz_save"].append(cz_save(disk, cz, f"home Clonezilla save {number}"))
            sizes["cz"].append(cz_size(cz))
            shutil.rmtree(cz)
            repo = work / f"home-repo-{number}"
            r, _ = our_save(disk, repo, "home", work, f"home appliance save {number}")
            runs["our_save"].append(r)
            sizes["ours"].append(tree_bytes(repo))
            shutil.rmtree(repo)
    finally:
        loops.detach(disk.loop)
    secs = {k: [r.seconds for r in rs] for k, rs in runs.items()}
    read_rates = [used / s for s in secs["raw_read"]]
    return {
        "used_bytes": used,
        "size": image.size,
        "content": image.content,
        "figures": {
            key: {
                "seconds": report.summary(secs[key]),
                "rate": report.rates(used, secs[key]),
                "cpu_busy": report.summary([r.cpu_busy(cores) for r in rs]),
                "others_busy": report.summary([r.others_busy(cores) for r in rs]),
            }
            for key, rs in runs.items()
        },
        "compress_rate": report.summary([x["compress_rate"] for x in limits]),
        "compressed_share": limits[-1]["compressed_share"],
        "save_speedup": report.ratios(secs["cz_save"], secs["our_save"]),
        "save_vs_limit": report.ratios(
            [used / s for s in secs["our_save"]],
            [min(r, x["compress_rate"]) for r, x in zip(read_rates, limits, strict=True)],
        ),
        "size_vs_cz": statistics.median(
            o / c for o, c in zip(sizes["ours"], sizes["cz"], strict=True)
        ),
    }


def targets(home: dict[str, Any]) -> list[report.Target]:
    """The home disk's lines: the save against its limit and against Clonezilla's."""
    f = home["figures"]
    return [
        report.Target(
            "home disk of already-compressed data: save vs its limit, min(read, compression)",
            ">= 85 %",
            report.fmt(home["save_vs_limit"], 0, 100, " %"),
            home["save_vs_limit"]["median"] >= 0.85,
            f"{home['used_bytes'] / 1e6:.0f} MB used; read {report.fmt(f['raw_read']['rate'], 0)}"
            f" MB/s, zstd -3 {report.fmt(home['compress_rate'], 0, 1e-6)} MB/s on every core "
            f"(it keeps {home['compressed_share'] * 100:.0f} % of the bytes); save "
            f"{report.fmt(f['our_save']['rate'], 0)} MB/s with CPU busy "
            f"{report.fmt(f['our_save']['cpu_busy'], 0, 100, ' %')}",
        ),
        report.Target(
            "home disk of already-compressed data: save vs Clonezilla's pipeline",
            "",
            report.fmt(home["save_speedup"], 2, unit="x"),
            None,
            f"image {home['size_vs_cz'] * 100:.1f} % of Clonezilla's; Clonezilla's save CPU "
            f"busy {report.fmt(f['cz_save']['cpu_busy'], 0, 100, ' %')}",
        ),
    ]

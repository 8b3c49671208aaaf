"""The read-only image view (appliance mount, files, extract): its read rate against reading
the same chunks directly, and the time from `mounted_partition` to the first root listing.
The `make bench` rows "mount view read rate" (target: at least 70 % of the direct rate) and
"time to the first listing"; alone:

    sudo python3 -m bench.mountview [--rounds N] [--cache DIR]

saves the cached 4 GiB benchmark disk once into a repository of its own, then, interleaved
and each after a dropped page cache:
- direct: every stored window of the largest partition fetched, decoded and checked
  (`RepositorySource.read_window`) on one thread per core, in order: what a restore's
  decoders do, with no FUSE and no kernel in between;
- view: the same windows read from the partition's FUSE file (io/imageview.py, as
  `appliance mount` serves it), in order, one 4 MiB read each;
- first listing: `mounted_partition` entered (view, loop device, read-only mount) until
  `os.listdir` of its root returned.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.build import Builder
from bench.jobs import attach, our_save
from bench.sh import BenchError, Loops, drop_caches, log

TARGET = 0.70  # the view's share of the direct read rate
READ = 4 << 20


def _largest(repo: Path, image: str) -> tuple[int, int, int]:
    """The number, stored bytes and region index of the image's largest mountable partition."""
    from appliance.fs.readonly import why_not_mountable
    from appliance.repo.image import load_image
    from appliance.repo.repository import Repository

    loaded = load_image(Repository.open(repo), image)
    best = max(
        (r for r in loaded.manifest.regions if r.partition is not None),
        key=lambda r: (why_not_mountable(r.fstype, r.method) is None, r.stored_windows),
    )
    index = loaded.indexes[best.name]
    stored = sum(
        min(index.window, best.size - n * index.window)
        for n, chunk in enumerate(index.chunks)
        if chunk is not None
    )
    number = best.partition
    assert number is not None
    return number, stored, [r.name for r in loaded.manifest.regions].index(best.name)


def _chunks(repo: Path, image: str, region: int) -> list[int]:
    """The numbers of the region's stored windows."""
    from appliance.repo.image import load_image
    from appliance.repo.repository import Repository

    loaded = load_image(Repository.open(repo), image)
    index = loaded.indexes[loaded.manifest.regions[region].name]
    return [n for n, chunk in enumerate(index.chunks) if chunk is not None]


def direct_read(repo: Path, image: str, region: int) -> float:
    """Seconds to fetch, decode and check every stored window of `region`, in order."""
    from appliance.io.source import RepositorySource
    from appliance.repo.image import load_image
    from appliance.repo.repository import Repository

    source = RepositorySource.from_image(load_image(Repository.open(repo), image))
    numbers = [n for n, c in enumerate(source.indexes[region].chunks) if c is not None]
    started = time.monotonic()
    with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        for data in pool.map(lambda n: source.read_window(region, n), numbers):
            assert data is not None
    return time.monotonic() - started


def view_read(repo: Path, image: str, number: int, region: int, work: Path) -> float:
    """Seconds to read the stored windows of the partition's view file, in order, with
    4 MiB reads (its unstored windows read as zeros; a reader that skips them, as this
    one, is comparable with reading the chunks)."""
    chunks = _chunks(repo, image, region)
    mountpoint = work / "view"
    mountpoint.mkdir(exist_ok=True)
    args = [sys.executable, "-m", "appliance.io.imageview", "--mount", str(mountpoint)]
    args += ["--repo", str(repo), "--image", image, "--partition", str(number)]
    args += ["--parent", str(os.getpid())]
    proc = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    try:
        path = mountpoint / "partition"
        deadline = time.monotonic() + 60
        while not path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("the image view did not come up")
            time.sleep(0.02)
        started = time.monotonic()
        fd = os.open(path, os.O_RDONLY)
        try:
            for number_ in chunks:
                os.pread(fd, READ, number_ * READ)
        finally:
            os.close(fd)
        return time.monotonic() - started
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False)
        proc.wait(timeout=60)


def first_listing(repo: Path, image: str, number: int) -> float:
    """Seconds from entering `mounted_partition` to its root's listing."""
    from appliance.jobs.imagemount import ImageRef, mounted_partition

    started = time.monotonic()
    with mounted_partition(ImageRef(repo=str(repo), image=image), number) as root:
        names = os.listdir(root)
        seconds = time.monotonic() - started
    if not names:
        raise BenchError("the partition's root listed nothing")
    return seconds


def measure(repo: Path, image: str, work: Path, rounds: int) -> dict[str, Any]:
    """The rows' figures: interleaved rounds, each run after a dropped page cache."""
    number, stored, region = _largest(repo, image)
    direct: list[float] = []
    view: list[float] = []
    listing: list[float] = []
    for round_ in range(1, rounds + 1):
        drop_caches()
        direct.append(direct_read(repo, image, region))
        drop_caches()
        view.append(view_read(repo, image, number, region, work))
        drop_caches()
        listing.append(first_listing(repo, image, number))
        log(
            f"mount view {round_}: direct {stored / direct[-1] / 1e6:.0f} MB/s, view "
            f"{stored / view[-1] / 1e6:.0f} MB/s, first listing {listing[-1]:.2f} s"
        )
    shares = [d / v for d, v in zip(direct, view, strict=True)]
    return {
        "partition": number,
        "stored_bytes": stored,
        "direct_seconds": direct,
        "view_seconds": view,
        "listing_seconds": listing,
        "direct_rate": statistics.median(stored / s for s in direct),
        "view_rate": statistics.median(stored / s for s in view),
        "view_share": statistics.median(shares),
        "listing_median": statistics.median(listing),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("BENCH_CACHE", "/var/tmp/appliance-bench")),
    )
    args = p.parse_args()
    work = args.cache / "mountview"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    loops = Loops()
    try:
        base_image = Builder(args.cache, loops).images(big=False)["base-4g"]
        src = attach(loops, base_image)
        repo = work / "repo"
        our_save(src, repo, "base", work, "appliance save")
        loops.close()
        found = measure(repo, "base", work, args.rounds)
    finally:
        loops.close()
    print(
        f"partition {found['partition']}, {found['stored_bytes'] / 1e6:.0f} MB stored: direct "
        f"{found['direct_rate'] / 1e6:.0f} MB/s, view {found['view_rate'] / 1e6:.0f} MB/s "
        f"({found['view_share'] * 100:.0f} %, target {TARGET * 100:.0f} %); first listing "
        f"{found['listing_median']:.2f} s (medians of {args.rounds})"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0 if found["view_share"] >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())

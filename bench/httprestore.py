"""Restore from a web server: the same repository restored from nginx on loopback and from
its folder, interleaved, each run after a dropped page cache (nginx reads the chunk files
from disk as the local restore does). The `make bench` row "restore from nginx vs from the
folder" (target: at least 80 % of the folder's throughput); alone:

    sudo python3 -m bench.httprestore [--rounds N] [--cache DIR]

uses the cached 4 GiB benchmark disk (built on first use), saves it once into a repository
of its own, serves the folder that holds it with nginx (tests/kit/webserve.py), and prints
each pair and the median ratio of throughputs (folder seconds / web seconds).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import cast

from bench.build import Builder
from bench.jobs import attach, blank_target, our_restore, our_save, wipe
from bench.measure import Run
from bench.rawread import window_digests
from bench.sh import BenchError, Loop, Loops

# nginx for the tests and for this row: the tests' kit (tests/kit), imported from there
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
_nginx = cast(
    Callable[[Path, Path], AbstractContextManager[str]],
    importlib.import_module("kit.webserve").nginx,
)
TARGET = 0.80  # the web restore's share of the folder restore's throughput


@contextmanager
def served(folder: Path, work: Path) -> Iterator[str]:
    """nginx on 127.0.0.1 serving `folder`; its base URL ("http://127.0.0.1:PORT")."""
    with _nginx(folder, work) as base:
        yield base


def http_restore(base: str, repo: Path, image: str, target: Loop, work: Path, label: str) -> Run:
    """`appliance restore --repo http://127.0.0.1:PORT/REPO/`: `repo` is served by `base`."""
    return our_restore(f"{base}/{repo.name}/", image, target, work, label)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("BENCH_CACHE", "/var/tmp/appliance-bench")),
    )
    args = p.parse_args()
    work = args.cache / "httprestore"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    loops = Loops()
    try:
        base_image = Builder(args.cache, loops).images(big=False)["base-4g"]
        src = attach(loops, base_image)
        target = blank_target(loops, work / "target.img", base_image.size)
        repo = work / "repo"
        our_save(src, repo, "base", work, "appliance save")
        expected = window_digests(src.node, src.windows)
        used = src.used_bytes
        local: list[float] = []
        web: list[float] = []
        with served(work, work) as base:
            for number in range(1, args.rounds + 1):
                wipe(target)
                r = our_restore(repo, "base", target, work, f"folder {number}")
                local.append(r.seconds)
                cpu = [r.cpu_seconds]
                wipe(target)
                r = http_restore(base, repo, "base", target, work, f"nginx {number}")
                web.append(r.seconds)
                cpu.append(r.cpu_seconds)
                if number == 1 and window_digests(target.node, src.windows) != expected:
                    raise BenchError("the restore from nginx differs from the source disk")
                print(
                    f"round {number}: folder {local[-1]:.2f} s ({used / local[-1] / 1e6:.0f} "
                    f"MB/s), nginx {web[-1]:.2f} s ({used / web[-1] / 1e6:.0f} MB/s), "
                    f"ratio {local[-1] / web[-1]:.2f}; CPU {cpu[0]:.1f} s / {cpu[1]:.1f} s",
                    flush=True,
                )
        ratio = statistics.median(a / b for a, b in zip(local, web, strict=True))
        verdict = "met" if ratio >= TARGET else "NOT met"
        print(
            f"restore from nginx on loopback vs from the folder: {ratio * 100:.0f} % of the "
            f"folder's throughput (median of {args.rounds}; target >= {TARGET * 100:.0f} %: "
            f"{verdict}); {used / 1e6:.0f} MB used"
        )
    finally:
        loops.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

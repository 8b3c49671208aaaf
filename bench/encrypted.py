"""Encrypted against unencrypted repositories: the same save and restore of `make bench`'s
4 GiB disk, into and from a format-v1 and a format-v2 (encrypted) repository, interleaved,
the page cache dropped before every run. `make bench` has the same pair in its table; this
runs only that pair (a few minutes instead of the whole benchmark).

    sudo python3 -m bench.encrypted [--rounds N] [--cache DIR] [--no-check]

Prints each run (wall time, and the CPU time of its process tree, which other programs on a
busy machine disturb less) and the median of the per-round ratios, encrypted / unencrypted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

from bench.build import Builder
from bench.jobs import (
    attach,
    blank_target,
    init_encrypted,
    our_restore,
    our_save,
    wipe,
)
from bench.sh import BenchError, Loops, log

CACHE = Path(os.environ.get("BENCH_CACHE", "/var/tmp/appliance-bench"))  # as `make bench`


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/appliance-bench-encrypted"))
    parser.add_argument(
        "--no-check", action="store_true", help="saves without their proof (save --no-check)"
    )
    args = parser.parse_args(argv)
    work: Path = args.work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    loops = Loops()
    times: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    try:
        base = Builder(args.cache, loops).images(big=False)["base-4g"]
        src = attach(loops, base)
        target = blank_target(loops, work / "target.img", base.size)
        used = src.used_bytes
        for number in range(1, args.rounds + 1):
            repos = {"plain": work / f"plain-{number}", "encrypted": work / f"sealed-{number}"}
            init_encrypted(repos["encrypted"], work)
            if number % 2 == 0:  # each kind goes first in every other round
                repos = dict(reversed(repos.items()))
            for kind, repo in repos.items():
                extra = ["--no-check"] if args.no_check else []
                r, result = our_save(src, repo, "base", work, f"save {kind} {number}", *extra)
                times.setdefault(f"save {kind}", []).append(r.seconds)
                cpu.setdefault(f"save {kind}", []).append(r.cpu_seconds)
                phases = ", ".join(f"{k} at {v:.1f} s" for k, v in result["phases"].items())
                log(f"save {kind} {number}: {r.seconds:.2f} s, CPU {r.cpu_seconds:.2f} s; {phases}")
            for kind, repo in repos.items():
                wipe(target)
                r = our_restore(repo, "base", target, work, f"restore {kind} {number}")
                times.setdefault(f"restore {kind}", []).append(r.seconds)
                cpu.setdefault(f"restore {kind}", []).append(r.cpu_seconds)
                log(f"restore {kind} {number}: {r.seconds:.2f} s, CPU {r.cpu_seconds:.2f} s")
            for repo in repos.values():
                shutil.rmtree(repo)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        loops.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{used / 1e6:.0f} MB used on {base.name}; {args.rounds} rounds; median (min-max)")
    for job, secs in times.items():
        rates = [used / s / 1e6 for s in secs]
        print(f"{job:20} {statistics.median(secs):7.2f} s {statistics.median(rates):7.0f} MB/s")
    for job in ("save", "restore"):
        for what, figures in (("time", times), ("CPU time", cpu)):
            plain, sealed = figures[f"{job} plain"], figures[f"{job} encrypted"]
            ratios = [e / p for e, p in zip(sealed, plain, strict=True)]
            print(
                f"{job}: encrypted / unencrypted {what} {statistics.median(ratios):.3f} "
                f"({min(ratios):.3f}-{max(ratios):.3f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

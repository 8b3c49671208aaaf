"""What proving a save costs on one disk, without the whole benchmark.

    python3 -m bench.proofcost DISK [--rounds N]      (as root, from the project folder)

Runs `appliance save DISK` (with its proof, the default) and `appliance save DISK
--no-check` back to back N times (page cache dropped before each, a fresh repository each
time, removed afterwards), then prints the median seconds of both, the median per-pair
difference, how long the save waited for its proofs after the copy and the sync, and each
partition's checker seconds. `make bench` measures the same pair on its own disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def one_save(disk: str, repo: Path, check: bool) -> tuple[float, dict[str, Any], dict[str, float]]:
    """Seconds, the JSON result and the moments each phase began (seconds since the start)."""
    shutil.rmtree(repo, ignore_errors=True)
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")
    argv = [
        sys.executable,
        "-m",
        "appliance.cli",
        "save",
        disk,
        "--repo",
        str(repo),
        "--image",
        "proofcost",
        "--json",
        "--progress",
        "json",
    ]
    started = time.monotonic()
    proc = subprocess.run(
        argv + ([] if check else ["--no-check"]), capture_output=True, text=True, check=False
    )
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"proofcost: the save failed: {proc.stderr.strip()}")
    phases: dict[str, float] = {}
    result: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        event = json.loads(line)
        if event.get("type") == "progress":
            phases.setdefault(str(event["phase"]), float(event["elapsed"]))
        elif event.get("type") == "result":
            result = event
    return seconds, result, phases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.proofcost")
    parser.add_argument("disk")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("proofcost: run as root (the page cache, the disk).", file=sys.stderr)
        return 2
    times: dict[bool, list[float]] = {True: [], False: []}
    waits: list[float] = []
    proofs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="proofcost-", dir="/var/tmp") as work:
        repo = Path(work) / "repo"
        for _ in range(args.rounds):
            for check in (True, False):
                seconds, result, phases = one_save(args.disk, repo, check)
                times[check].append(seconds)
                if check:
                    waits.append(float(result["seconds"]) - phases.get("proof", 0.0))
                    for name, proof in result.get("proofs", {}).items():
                        proofs.setdefault(f"{name} {proof['tool']}", []).append(proof["seconds"])
    med = statistics.median

    def listed(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    print(f"save (proven):      median {med(times[True]):.2f} s  ({listed(times[True])})")
    print(f"save --no-check:    median {med(times[False]):.2f} s  ({listed(times[False])})")
    print(
        "difference per pair: median "
        f"{med([a - b for a, b in zip(times[True], times[False], strict=True)]):.2f} s"
    )
    print(f"waiting for the proofs after the copy and the sync: median {med(waits):.2f} s")
    for name, values in proofs.items():
        print(f"proof {name}: median {med(values):.2f} s  ({listed(values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

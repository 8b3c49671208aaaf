"""A room of PCs: the aggregate throughput of one image restored onto 1, 2 and 4 clients at
once, over HTTP (nginx on loopback, each client a real `appliance restore` onto its own
loop disk) and over multicast (`cast send` to `cast receive` clients in the network
namespaces of tests/kit/castroom.py, each onto its own loop disk). The `make bench` rows
"lab restore"; alone, in a few minutes:

    sudo python3 -m bench.labscale [--data MIB] [--clients 1,2,4]

The image is a GPT disk with one ext4 partition holding `--data` MiB of random files
(tests/kit/datadisk.py: every 4 MiB window a stored chunk, nothing compresses), saved once.
The page cache is dropped before each run. A run's time is from the first client's start
(HTTP) or the sender's start (multicast) until the last client ended; the aggregate is the
clients' used bytes together over that time, per client the used bytes over it. The first
client of every run is compared with the source partition (cmp). All of it runs on this
machine: the figures show the software's cost with N clients sharing this CPU, not a
network; docs/performance.md projects them onto 30 PCs on one 1 GbE link.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.jobs import appliance, appliance_env
from bench.report import Target
from bench.sh import BenchError, drop_caches, log

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the tests' kit
_kit = {name: importlib.import_module(f"kit.{name}") for name in ("castroom", "datadisk", "loops")}
_webserve = importlib.import_module("kit.webserve")
MiB = 1024 * 1024
TIMEOUT = 900


@dataclass
class Row:
    mode: str  # "http" or "multicast"
    clients: int
    used: int  # bytes of used data each client restores
    seconds: float

    @property
    def aggregate(self) -> float:
        return self.clients * self.used / self.seconds / 1e6

    @property
    def per_client(self) -> float:
        return self.used / self.seconds / 1e6

    def line(self) -> str:
        how = "HTTP (nginx on loopback)" if self.mode == "http" else "multicast (udpcast)"
        return (
            f"{self.clients} client{'s' if self.clients != 1 else ''} over {how}: "
            f"{self.aggregate:.0f} MB/s aggregate, {self.per_client:.0f} MB/s per client "
            f"({self.seconds:.1f} s)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "clients": self.clients,
            "used_bytes": self.used,
            "seconds": round(self.seconds, 3),
            "aggregate_mb_s": round(self.aggregate, 1),
            "per_client_mb_s": round(self.per_client, 1),
        }


def _wait_all(procs: list[subprocess.Popen[str]], what: str) -> None:
    for proc in procs:
        _, err = proc.communicate(timeout=TIMEOUT)
        if proc.returncode != 0:
            raise BenchError(f"{what} exited {proc.returncode}: {err.strip()[-400:]}")


def _same_partition(source: str, target: str) -> None:
    """The first client's data partition equals the source's, byte for byte."""
    subprocess.run(["partx", "-u", target], check=False, capture_output=True)
    proc = subprocess.run(["cmp", "-s", f"{source}p1", f"{target}p1"], check=False)
    if proc.returncode != 0:
        raise BenchError(f"{target}p1 differs from the source's partition after the restore")


def http_row(base: str, targets: list[str], used: int, source: str, work: Path) -> Row:
    drop_caches()
    env = appliance_env(work)
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            appliance(
                "restore",
                "--repo",
                f"{base}/repo/",
                "--image",
                "lab",
                node,
                "--yes",
                "--progress=none",
            ),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for node in targets
    ]
    _wait_all(procs, "appliance restore from nginx")
    row = Row("http", len(targets), used, time.monotonic() - started)
    _same_partition(source, targets[0])
    return row


def multicast_row(repo: Path, targets: list[str], used: int, source: str, work: Path) -> Row:
    drop_caches()
    env = appliance_env(work)
    keep = {k: env[k] for k in ("PYTHONPATH", "APPLIANCE_LOG")}
    with _kit["castroom"].room(len(targets) + 1) as pcs:
        sender, receivers = pcs[0], pcs[1:]
        procs = [
            subprocess.Popen(
                pc.appliance(
                    "cast",
                    "receive",
                    node,
                    "--interface",
                    "eth0",
                    "--yes",
                    "--wait",
                    "120",
                    "--progress=none",
                    env=keep,
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for pc, node in zip(receivers, targets, strict=True)
        ]
        time.sleep(1.0)  # the receivers listen before the sender asks who is there
        started = time.monotonic()
        send = subprocess.Popen(
            sender.appliance(
                "cast", "send", "--repo", str(repo), "--image", "lab",
                "--receivers", str(len(targets)), "--wait", "60", "--interface", "eth0",
                "--linger", "0", "--progress=none", "--json", env=keep,
            ),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _wait_all(procs, "appliance cast receive")
        seconds = time.monotonic() - started
        _wait_all([send], "appliance cast send")
    row = Row("multicast", len(targets), used, seconds)
    _same_partition(source, targets[0])
    return row


@contextlib.contextmanager
def _prepared(work: Path, data: int, most: int) -> Iterator[tuple[str, Path, list[str], int]]:
    """(source node, repository, `most` blank targets, used bytes) on loop devices of ours."""
    loops = _kit["loops"].Loops(work)
    try:
        source = _kit["datadisk"].build_data_disk(loops, work / "source.img", data)
        repo = work / "repo"
        save = appliance("save", source, "--repo", str(repo), "--image", "lab", "--create")
        proc = subprocess.run(
            [*save, "--no-check", "--json", "--progress=none"],
            env=appliance_env(work), capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise BenchError(f"appliance save exited {proc.returncode}: {proc.stderr.strip()}")
        manifest = json.loads((repo / "images" / "lab" / "manifest.json").read_text())
        used = sum(int(r.get("used_bytes", 0)) for r in manifest["regions"])
        size = _kit["datadisk"].data_disk_size(data)
        targets = []
        for number in range(most):
            path = work / f"client-{number}.img"
            with open(path, "wb") as handle:
                handle.truncate(size)
            targets.append(loops.attach(path))
        yield source, repo, targets, used
    finally:
        loops.cleanup()


def measure(
    work: Path, data_mib: int = 512, clients: tuple[int, ...] = (1, 2, 4)
) -> dict[str, Any]:
    """Every row (see the module's doc); `work` is emptied first and removed at the end."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows: list[Row] = []
    try:
        with _prepared(work, data_mib * MiB, max(clients)) as (source, repo, targets, used):
            log(f"lab restore: {used / 1e6:.0f} MB used, clients {clients}")
            with _webserve.nginx(work, work) as base:
                for n in clients:
                    rows.append(http_row(base, targets[:n], used, source, work))
                    log(rows[-1].line())
            for n in clients:
                rows.append(multicast_row(repo, targets[:n], used, source, work))
                log(rows[-1].line())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"data_mib": data_mib, "rows": [row.to_json() for row in rows]}


def targets(result: dict[str, Any]) -> list[Target]:
    """The rows as report lines (reported, not targets: this machine is not a room)."""
    out = []
    for row in result["rows"]:
        how = "HTTP from nginx on loopback" if row["mode"] == "http" else "multicast (udpcast)"
        out.append(
            Target(
                f"lab restore, {row['clients']} client(s) at once over {how}",
                "",
                f"{row['aggregate_mb_s']:.0f} MB/s aggregate, "
                f"{row['per_client_mb_s']:.0f} MB/s per client",
                None,
                f"{row['used_bytes'] / 1e6:.0f} MB used each, {row['seconds']:.1f} s; each "
                "client a real restore onto its own loop disk, all on this machine's CPU",
            )
        )
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=int, default=512, metavar="MIB", help="MiB of data (512)")
    p.add_argument("--clients", default="1,2,4", help="client counts (1,2,4)")
    p.add_argument("--work", type=Path, default=Path("/var/tmp/appliance-bench/labscale"))
    args = p.parse_args()
    counts = tuple(int(n) for n in args.clients.split(","))
    try:
        result = measure(args.work, args.data, counts)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    for target in targets(result):
        print(target.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

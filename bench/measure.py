"""One timed process: wall time, CPU time and peak resident memory of its whole tree.

CPU comes from wait4() (user + system time of the process and every descendant it waited
for). Peak RSS is the larger of the largest sum of VmRSS over the live tree (children
included: the partclone, zstd and sfdisk processes of a pipeline) and the largest VmHWM (a
process's own high-water mark) of any process in it, both sampled every 50 ms from /proc.
wait4()'s ru_maxrss is not used: Linux carries the parent's high-water mark over fork and
exec, so every child would report at least the size of the benchmark's own process. The
kernel here has no /proc/PID/task/TID/children, so the tree is found from each new PID's
parent, read once. A child that still shares its parent's memory (spawned with vfork, not
yet exec'd: kcmp(2) says so) is not counted twice: caught in that instant it reported the
whole parent's VmRSS again, and one save of the 8 GiB disk in four peaked at 217 MiB
instead of 146-149 MiB.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from bench.sh import BenchError, drop_caches

TICKS = os.sysconf("SC_CLK_TCK")
SYS_KCMP = {"x86_64": 312, "aarch64": 272}.get(os.uname().machine)
KCMP_VM = 1


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def shares_memory(pid: int, other: int) -> bool:
    """Whether two processes share one address space (kcmp KCMP_VM; False if it cannot
    tell): a child spawned with vfork shares its parent's until it execs."""
    if SYS_KCMP is None:
        return False
    return int(_libc().syscall(SYS_KCMP, pid, other, KCMP_VM, 0, 0)) == 0


@dataclass
class Run:
    label: str
    seconds: float
    cpu_seconds: float  # user + system, the whole process tree
    peak_rss: int  # bytes
    returncode: int
    stdout: str
    stderr: str
    others_cpu_seconds: float = 0.0  # CPU time the rest of the machine used meanwhile
    cpu_series: list[tuple[float, float]] = field(default_factory=list)

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds the tree used between two moments (seconds since it started),
        interpolated from the 50 ms samples."""

        def at(t: float) -> float:
            points = self.cpu_series
            if not points:
                return 0.0
            if t <= points[0][0]:
                return points[0][1]
            for (t0, c0), (t1, c1) in itertools.pairwise(points):
                if t0 <= t <= t1:
                    return c0 + (c1 - c0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.0)
            return points[-1][1]

        return max(0.0, at(end) - at(start))

    def others_busy(self, cores: int) -> float:
        """Share of the machine's cores that other processes used during the run: noise."""
        return self.others_cpu_seconds / (self.seconds * cores) if self.seconds > 0 else 0.0

    def cpu_busy(self, cores: int) -> float:
        """Share of the machine's cores kept busy: CPU time over wall time x cores."""
        return self.cpu_seconds / (self.seconds * cores) if self.seconds > 0 else 0.0


class TreeSampler:
    """Largest total RSS of a process and its descendants, sampled until `stop`."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        self.root = root
        self.interval = interval
        self.peak = 0
        self.high_water = 0
        self.started = time.perf_counter()
        self.series: list[tuple[float, float]] = []  # (seconds since start, CPU seconds)
        self.parents: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _parent(self, pid: int) -> int:
        if pid not in self.parents:
            try:
                with open(f"/proc/{pid}/stat", "rb") as handle:
                    stat = handle.read()
                # the command name is in parentheses and may hold spaces: split after it
                self.parents[pid] = int(stat[stat.rindex(b")") + 2 :].split()[1])
            except (OSError, ValueError, IndexError):
                self.parents[pid] = -1
        return self.parents[pid]

    def sample(self) -> int:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
        children: dict[int, list[int]] = {}
        for pid in pids:
            children.setdefault(self._parent(pid), []).append(pid)
        total = 0
        cpu = 0
        todo = [self.root]
        while todo:
            pid = todo.pop()
            try:
                with open(f"/proc/{pid}/stat", "rb") as handle:
                    stat = handle.read()
                fields = stat[stat.rindex(b")") + 2 :].split()
                # utime, stime (and for the job itself, cutime, cstime of reaped children)
                cpu += sum(int(x) for x in fields[11 : 15 if pid == self.root else 13])
            except (OSError, ValueError, IndexError):
                pass
            try:
                with open(f"/proc/{pid}/status", "rb") as handle:
                    status = handle.read()
            except OSError:
                status = b""
            shared = pid != self.root and shares_memory(pid, self._parent(pid))
            for line in status.splitlines():
                if line.startswith(b"VmRSS:") and not shared:
                    total += int(line.split()[1]) * 1024
                elif line.startswith(b"VmHWM:"):
                    self.high_water = max(self.high_water, int(line.split()[1]) * 1024)
            todo.extend(children.get(pid, ()))
        self.series.append((time.perf_counter() - self.started, cpu / TICKS))
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self._stop.wait(self.interval)


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat)."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / TICKS


def timed(
    label: str,
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    drop: bool = True,
    check: bool = True,
) -> Run:
    """Drop the page cache (untimed), then run `args` and measure it."""
    if drop:
        drop_caches()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        machine_busy = busy_seconds()
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(args), stdout=out, stderr=err, cwd=cwd, env=dict(env) if env is not None else None
        )
        sampler = TreeSampler(proc.pid)
        sampler.started = started
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            sampler.stop()
            raise
        seconds = time.perf_counter() - started
        machine_busy = busy_seconds() - machine_busy
        sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = Run(
            label,
            seconds,
            usage.ru_utime + usage.ru_stime,
            max(sampler.peak, sampler.high_water),
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            max(0.0, machine_busy - (usage.ru_utime + usage.ru_stime)),
            sampler.series,
        )
    if check and result.returncode != 0:
        raise BenchError(
            f"{label} failed (exit {result.returncode}): {result.stderr.strip()[-1500:]}"
        )
    return result

"""Statistics, targets, the Markdown table, results/bench.json and docs/performance.md.

Every figure is the median (min-max) of its runs; every comparison is the median (min-max)
of the per-pair ratios (pair i = the two competing commands run back to back in round i).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MiB = 1024 * 1024

BEGIN = "<!-- bench:begin (written by `make bench`; edit the text outside these marks) -->"
END = "<!-- bench:end -->"


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def fmt(s: dict[str, Any], digits: int = 1, scale: float = 1.0, unit: str = "") -> str:
    def num(x: float) -> str:
        return f"{x * scale:.{digits}f}"

    if len(s["values"]) == 1 or s["min"] == s["max"]:
        return f"{num(s['median'])}{unit}"
    return f"{num(s['median'])}{unit} ({num(s['min'])}–{num(s['max'])})"


def ratios(numer: list[float], denom: list[float]) -> dict[str, Any]:
    return summary([a / b for a, b in zip(numer, denom, strict=True)])


def rates(nbytes: int, seconds: list[float]) -> dict[str, Any]:
    return summary([nbytes / s / 1e6 for s in seconds])


@dataclass
class Target:
    name: str
    wanted: str
    result: str
    ok: bool | None  # None: reported, not a target
    note: str = ""

    def line(self) -> str:
        verdict = "INFO" if self.ok is None else "PASS" if self.ok else "MISS"
        wanted = f" (target {self.wanted})" if self.wanted else ""
        return (
            f"{verdict}  {self.name}: {self.result}{wanted}{f'; {self.note}' if self.note else ''}"
        )


def _first_line(args: list[str]) -> str:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (proc.stdout + proc.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


def machine() -> dict[str, Any]:
    model = "?"
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = found.group(1).strip() if found else platform.processor() or "?"
    except OSError:
        pass
    mem = 0
    try:
        found = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        mem = int(found.group(1)) * 1024 if found else 0
    except OSError:
        pass
    debian = "?"
    with contextlib.suppress(OSError):
        debian = Path("/etc/debian_version").read_text().strip()
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "ram_bytes": mem,
        "ram": f"{mem / 1024**3:.1f} GiB",
        "kernel": platform.release(),
        "debian": debian,
        "python": platform.python_version(),
        "partclone": _first_line(["partclone.extfs", "--version"]),
        "zstd": _first_line(["zstd", "--version"]),
        "load_average": Path("/proc/loadavg").read_text().split()[:3],
    }


def git_revision(project: Path) -> str:
    """The engine's commit, and whether appliance/ has changes not committed yet."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(project), *args], capture_output=True, text=True, check=False
        )

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "appliance").stdout.strip()
    except OSError:
        return str(project)
    if head.returncode != 0:
        return str(project)
    return head.stdout.strip() + (" + uncommitted changes in appliance/" if dirty else "")


def markdown(res: dict[str, Any]) -> str:
    """The run as Markdown: figures, comparisons, memory, sizes, targets."""
    m = res["machine"]
    d = res["disk"]
    f = res["figures"]
    c = res["comparisons"]
    workers = f"; save and restore with --workers {res['workers']}" if res.get("workers") else ""
    lines = [
        f"Run of {res['date']} on {m['cpu']}, {m['cores']} cores, {m['ram']} RAM, "
        f"Linux {m['kernel']} (Debian {m['debian']}); engine {res['revision']}; "
        f"{res['rounds']} rounds{workers}; load average {' '.join(res['load_before'])} before, "
        f"{' '.join(res['load_after'])} after; the whole run took {res['total_seconds']:.0f} s.",
        "",
        f"Disk: {d['size'] / 1024**3:.0f} GiB GPT ({d['layout']}); "
        f"{d['used_bytes'] / 1e6:.0f} MB used ({d['used_share'] * 100:.0f} %) by the "
        f"partclone -D maps; root from {d['rootfs']}. Attached with direct I/O; page cache "
        "dropped before every run. Rates are MB/s (10^6 bytes) of used data. CPU busy: the "
        "run's process tree, CPU time / (wall time x cores); other processes' CPU: the same "
        "for everything else on the machine during the run (noise: near 0 % when quiet).",
        "",
        "| run | seconds | MB/s | CPU busy | peak RSS | other processes' CPU |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, label in (
        ("raw_read", "limit: O_DIRECT read of the used data"),
        ("dd", "limit: dd of the whole disk (MB/s of disk bytes)"),
        ("cz_save", "save: partclone -c \\| zstd -T0 -3 (Clonezilla)"),
        ("our_save", "save: appliance save (each partition proven)"),
        ("our_save_nocheck", "save: appliance save --no-check"),
        ("our_save_encrypted", "save: appliance save, encrypted repository"),
        ("our_incremental", "incremental: appliance save, 2nd image"),
        ("cz_restore", "restore: zstd -dc \\| partclone -r (Clonezilla)"),
        ("our_restore", "restore: appliance restore"),
        ("our_restore_memory", "restore: appliance restore, repository in memory"),
        ("our_restore_encrypted", "restore: appliance restore, encrypted repository"),
    ):
        if key not in f:
            continue  # a results file of an earlier bench
        fig = f[key]
        lines.append(
            f"| {label} | {fmt(fig['seconds'], 2)} | {fmt(fig['rate'], 0)} | "
            f"{fmt(fig['cpu_busy'], 0, 100, ' %')} | "
            f"{fmt(fig['peak_rss'], 0, 1 / MiB, ' MiB')} | "
            f"{fmt(fig['others_busy'], 0, 100, ' %')} |"
        )
        if key == "raw_read" and "limits" in res:
            lim = res["limits"]
            for name, what in (
                ("compress_rate", "zstd -3 of every used window on every core, in memory"),
                ("decompress_rate", "zstd decompression of those frames, every core"),
                ("write_rate", "O_DIRECT write of the used data onto the target, fsync"),
            ):
                lines.append(f"| limit: {what} | | {fmt(lim[name], 0, 1e-6)} | | | |")
    lines += [
        "",
        "| comparison (median of per-pair ratios) | result |",
        "| --- | --- |",
        f"| save: appliance vs Clonezilla's pipeline | {fmt(c['save_speedup'], 2, unit='x')} |",
        f"| save: appliance --no-check vs Clonezilla's pipeline | "
        f"{fmt(c['save_nocheck_speedup'], 2, unit='x')} |",
        f"| save: the proof's cost (save / save --no-check) | "
        f"{fmt(c['proof_cost'], 2, unit='x')} |",
        f"| restore: appliance vs partclone restore | {fmt(c['restore_speedup'], 2, unit='x')} |",
        f"| encrypted vs unencrypted save (time) | {fmt(c['encrypted_save_cost'], 2, unit='x')} |",
        f"| encrypted vs unencrypted restore (time) | "
        f"{fmt(c['encrypted_restore_cost'], 2, unit='x')} |",
        f"| incremental save vs first save | {fmt(c['incremental_vs_first'], 2, unit='x')} |",
        f"| incremental save vs raw read of the used data | "
        f"{fmt(c['incremental_vs_raw'], 0, 100, ' %')} |",
        f"| save vs raw read of the used data | {fmt(c['save_vs_raw'], 0, 100, ' %')} |",
        *(
            [
                f"| save vs its limit, min(read, compression) | "
                f"{fmt(c['save_vs_limit'], 0, 100, ' %')} |",
                f"| restore vs its limit, min(write, decompression) | "
                f"{fmt(c['restore_vs_limit'], 0, 100, ' %')} |",
            ]
            if "save_vs_limit" in c
            else []
        ),
        "",
    ]
    s = res["sizes"]
    inc = res["incremental"]
    lines += [
        "| image | bytes | |",
        "| --- | --- | --- |",
        f"| appliance repository, first image | {s['ours'] / 1e6:.1f} MB | "
        f"{s['ours'] / s['cz'] * 100:.1f} % of Clonezilla's |",
        f"| partclone \\| zstd -3 files + sfdisk dump | {s['cz'] / 1e6:.1f} MB | |",
        f"| appliance, added by the incremental save | {inc['stored_bytes'] / 1e6:.1f} MB | "
        f"{inc['stored_share'] * 100:.1f} % of the first image; {inc['new_chunks']} new of "
        f"{inc['chunks']} chunks ({inc['new_share'] * 100:.1f} %) |",
        "",
    ]
    home = res.get("home")
    if home:
        hf = home["figures"]
        lines += [
            f"Home disk of already-compressed data: {home['size'] / 1024**3:.0f} GiB, "
            f"{home['used_bytes'] / 1e6:.0f} MB used (photos, video, archives); zstd -3 keeps "
            f"{home['compressed_share'] * 100:.0f} % of its bytes, at "
            f"{fmt(home['compress_rate'], 0, 1e-6)} MB/s on every core.",
            "",
            "| run | seconds | MB/s | CPU busy | other processes' CPU |",
            "| --- | --- | --- | --- | --- |",
        ]
        for key, label in (
            ("raw_read", "limit: O_DIRECT read of the used data"),
            ("cz_save", "save: partclone -c \\| zstd -T0 -3 (Clonezilla)"),
            ("our_save", "save: appliance save (each partition proven)"),
        ):
            fig = hf[key]
            lines.append(
                f"| {label} | {fmt(fig['seconds'], 2)} | {fmt(fig['rate'], 0)} | "
                f"{fmt(fig['cpu_busy'], 0, 100, ' %')} | {fmt(fig['others_busy'], 0, 100, ' %')} |"
            )
        lines.append("")
    r = res["rss"]
    lines += [
        "| peak RSS (process tree) | " + " | ".join(r["sizes"]) + " |",
        "| --- |" + " --- |" * len(r["sizes"]),
    ]
    for job in ("save", "restore"):
        lines.append(
            f"| appliance {job} | " + " | ".join(f"{v / MiB:.0f} MiB" for v in r[job]) + " |"
        )
    lines += ["", "Targets:", "", "```"]
    lines += [t["line"] for t in res["targets"]]
    lines += ["```"]
    return "\n".join(lines)


def update_docs(path: Path, table: str) -> None:
    """Put `table` between the bench marks of docs/performance.md (the rest is kept)."""
    text = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{table}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = (
            (text.rstrip() + "\n\n" if text else "# Performance\n\n")
            + "## Latest run\n\n"
            + block
            + "\n"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M %Z")

"""Shell helpers: run tools, attach and detach our own loop devices, mount, drop the page cache.

Loop devices are shared with other jobs on the machine: `Loops` detaches only the devices it
attached, and only while they are still backed by the file it attached.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and why."""


_STARTED = time.monotonic()


def log(message: str) -> None:
    """One progress line on stderr, with the minutes and seconds since the bench started."""
    minutes, seconds = divmod(int(time.monotonic() - _STARTED), 60)
    print(f"bench [{minutes:02d}:{seconds:02d}]: {message}", file=sys.stderr, flush=True)


def run(
    args: Sequence[str],
    *,
    stdin: bytes | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = 1800,
) -> subprocess.CompletedProcess[bytes]:
    """Run a tool, capture its output; BenchError with its stderr when it fails."""
    try:
        proc = subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            check=False,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
        )
    except FileNotFoundError as exc:
        raise BenchError(f"{args[0]} is not installed.") from exc
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-1500:]
        raise BenchError(f"{' '.join(args)} exited with {proc.returncode}: {err}")
    return proc


def out(
    args: Sequence[str], *, stdin: bytes | None = None, env: Mapping[str, str] | None = None
) -> str:
    return run(args, stdin=stdin, env=env).stdout.decode(errors="replace")


def drop_caches() -> None:
    """Write back dirty pages, then drop the page cache, dentries and inodes."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def partition_node(disk: str, number: int) -> str:
    return f"{disk}p{number}"


@dataclass(frozen=True)
class Loop:
    node: str
    backing: Path
    direct_io: bool


class Loops:
    """Loop devices this run attached; `close` detaches exactly those."""

    def __init__(self) -> None:
        self.attached: list[Loop] = []

    def attach(self, path: Path, *, read_only: bool = False, direct_io: bool = True) -> Loop:
        args = ["losetup", "--find", "--show", f"--direct-io={'on' if direct_io else 'off'}"]
        if read_only:
            args.append("--read-only")
        node = out([*args, str(path)]).strip()
        name = Path(node).name
        dio = Path(f"/sys/block/{name}/loop/dio")
        loop = Loop(node, path.resolve(), direct_io=dio.exists() and dio.read_text().strip() == "1")
        self.attached.append(loop)
        if direct_io and not loop.direct_io:
            log(f"warning: {node} did not switch to direct I/O; figures include the page cache")
        self.rescan(loop)
        return loop

    @staticmethod
    def rescan(loop: Loop) -> None:
        """Make the kernel's partitions match the table (there is no in-kernel parser)."""
        run(["partx", "--delete", loop.node], check=False)
        if run(["sfdisk", "--dump", loop.node], check=False).returncode == 0:
            run(["partx", "--add", loop.node], check=False)
        name = Path(loop.node).name
        deadline = time.monotonic() + 5
        for entry in sorted(Path(f"/sys/block/{name}").glob(f"{name}p*")):
            while not Path(f"/dev/{entry.name}").exists() and time.monotonic() < deadline:
                time.sleep(0.02)  # devtmpfs adds the node as the kernel adds the partition

    def backing_of(self, loop: Loop) -> Path | None:
        name = Path(loop.node).name
        try:
            return Path(Path(f"/sys/block/{name}/loop/backing_file").read_text().strip())
        except OSError:
            return None

    def detach(self, loop: Loop) -> None:
        if loop not in self.attached:
            raise BenchError(f"{loop.node} was not attached by this run; not detaching it.")
        self.attached.remove(loop)
        backing = self.backing_of(loop)
        if backing is None or backing.resolve() != loop.backing:
            log(f"{loop.node} is no longer backed by {loop.backing}; leaving it alone")
            return
        run(["partx", "--delete", loop.node], check=False)
        for attempt in range(20):
            if run(["losetup", "--detach", loop.node], check=False).returncode == 0:
                return
            time.sleep(0.25 * (attempt + 1))
        log(f"could not detach {loop.node} ({loop.backing}); detach it by hand")

    def close(self) -> None:
        for loop in reversed(list(self.attached)):
            self.detach(loop)


@contextmanager
def mounted(node: str, point: Path, fstype: str, read_only: bool = False) -> Iterator[Path]:
    """Mount `node` on `point` (ext4 by the kernel, ntfs through ntfs-3g), unmount after."""
    point.mkdir(parents=True, exist_ok=True)
    fuse: subprocess.Popen[bytes] | None = None
    if fstype == "ntfs":
        opts = "no_detach," + ("ro" if read_only else "big_writes")
        fuse = subprocess.Popen(
            ["ntfs-3g", "-o", opts, node, str(point)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while not os.path.ismount(point):
            if fuse.poll() is not None or time.monotonic() > deadline:
                err = fuse.stderr.read().decode(errors="replace") if fuse.stderr else ""
                with suppress(ProcessLookupError):
                    fuse.kill()
                fuse.wait()
                raise BenchError(f"ntfs-3g could not mount {node}: {err.strip()}")
            time.sleep(0.05)
    else:
        run(["mount", "-t", fstype, *(["-o", "ro"] if read_only else []), node, str(point)])
    try:
        yield point
    finally:
        os.sync()
        for attempt in range(20):
            if run(["umount", str(point)], check=False).returncode == 0:
                break
            time.sleep(0.25 * (attempt + 1))
        else:
            log(f"could not unmount {point}")
        if fuse is not None:
            try:
                fuse.wait(timeout=120)  # ntfs-3g writes the volume clean as it exits
            except subprocess.TimeoutExpired:
                log(f"ntfs-3g for {node} did not exit after unmount (pid {fuse.pid})")
        with suppress(OSError):
            point.rmdir()

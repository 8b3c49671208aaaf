"""Stopping a real job mid-write: start the command line in its own process group, wait for
its first write (the incomplete marker in sector 0), SIGKILL it, and read what the target
then shows (the marker, a table, what `appliance disks` reports)."""

from __future__ import annotations

import json
import mmap
import os
import signal
import subprocess
import sys
import time

from kit.cli import appliance


def start(*args: str) -> subprocess.Popen[bytes]:
    """The real command line in its own process group (its tools die with it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=ctrl_c_live,
    )


def ctrl_c_live() -> None:
    """In the child: Ctrl-C works as on a terminal, even when the tests were started in the
    background (a shell starts background commands with SIGINT ignored, and children keep
    that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def marked(node: str) -> bool:
    """Whether sector 0 holds the incomplete-restore marker (read past the page cache)."""
    fd = os.open(node, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 4096)
    try:
        os.preadv(fd, [buf], 0)
        return buf[:28] == b"APPLIANCE INCOMPLETE RESTORE"
    finally:
        buf.close()
        os.close(fd)


def first_write(proc: subprocess.Popen[bytes], node: str) -> float:
    """Wait until the job has written its marker; the seconds that took."""
    began = time.monotonic()
    while not marked(node) and proc.poll() is None:
        time.sleep(0.005)
    return time.monotonic() - began


def kill_after(proc: subprocess.Popen[bytes], node: str, delay: float) -> bool:
    """SIGKILL the job and its tools `delay` seconds after its first write; False when it
    had finished by then."""
    first_write(proc, node)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True
    assert proc.returncode == 0, proc.returncode
    return False


def has_valid_table(node: str) -> bool:
    proc = subprocess.run(["sfdisk", "--json", node], capture_output=True, text=True)
    sfdisk_sees = proc.returncode == 0 and "partitiontable" in proc.stdout
    probe = subprocess.run(["blkid", "-p", "-o", "export", node], capture_output=True, text=True)
    return sfdisk_sees or "PTTYPE=" in probe.stdout


def reported(node: str) -> str | None:
    out = json.loads(appliance("disks", "--all", "--json").stdout)
    [disk] = [d for d in out["disks"] if d["node"] == node]
    value = disk["incomplete"]
    assert value is None or isinstance(value, str)
    return value

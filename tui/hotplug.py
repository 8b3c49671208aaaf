"""Disks that appear, vanish or change while the app runs.

Where udevd runs, a pyudev monitor hears the kernel's block events. Where it does not (a
minimal live system, a container), a thread reads /sys/block every two seconds and compares
what it sees: names, sizes, loop backing files and partitions. Either way the callback is
called from the watcher's own thread, at most once per interval, and never while paused
(a running job changes partitions on purpose).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

UDEV_CONTROL = "/run/udev/control"
Signature = tuple[tuple[str, ...], ...]


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def sysfs_signature(sysfs: str = "/sys") -> Signature:
    """What /sys/block says about every block device, as a comparable value."""
    block = os.path.join(sysfs, "block")
    try:
        names = sorted(os.listdir(block))
    except OSError:
        return ()
    out: list[tuple[str, ...]] = []
    for name in names:
        folder = os.path.join(block, name)
        try:
            children = sorted(
                entry
                for entry in os.listdir(folder)
                if entry.startswith(name)
                and os.path.exists(os.path.join(folder, entry, "partition"))
            )
        except OSError:
            children = []
        parts = [f"{child}:{_read(os.path.join(folder, child, 'size'))}" for child in children]
        out.append(
            (
                name,
                _read(os.path.join(folder, "size")),
                _read(os.path.join(folder, "ro")),
                _read(os.path.join(folder, "loop", "backing_file")),
                *parts,
            )
        )
    return tuple(out)


def udev_running() -> bool:
    return os.path.exists(UDEV_CONTROL)


class DiskWatcher:
    """Calls `changed()` from its own thread when the machine's disks change."""

    def __init__(
        self,
        changed: Callable[[], None],
        interval: float = 2.0,
        sysfs: str = "/sys",
        use_udev: bool | None = None,
    ) -> None:
        self.changed = changed
        self.interval = interval
        self.sysfs = sysfs
        self.use_udev = udev_running() if use_udev is None else use_udev
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._heard = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: Any = None
        self._last: Signature = ()

    @property
    def mode(self) -> str:
        return "udev" if self._observer is not None else "poll"

    def start(self) -> None:
        self._last = sysfs_signature(self.sysfs)
        if self.use_udev:
            self._start_udev()
        self._thread = threading.Thread(target=self._loop, name="disk-watcher", daemon=True)
        self._thread.start()

    def _start_udev(self) -> None:
        try:
            import pyudev

            monitor = pyudev.Monitor.from_netlink(pyudev.Context())
            monitor.filter_by("block")

            def heard(device: Any) -> None:
                if device.device_type in ("disk", "partition"):
                    self._heard.set()

            self._observer = pyudev.MonitorObserver(monitor, callback=heard, name="udev-watcher")
            self._observer.daemon = True
            self._observer.start()
        except Exception as exc:  # no udev: the sysfs poll does the job
            log.info("no udev monitor (%s); polling /sys/block instead", exc)
            self._observer = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval if self._observer is None else 0.5):
            if self._paused.is_set():
                continue
            if self._observer is not None:
                if not self._heard.is_set():
                    continue
                self._heard.clear()
                # udev also sends "change" when a program closes a disk it opened for
                # writing (libparted does, while we scan): only a real difference counts,
                # or each scan would start the next one.
                now = sysfs_signature(self.sysfs)
                if now != self._last:
                    self._last = now
                    self._call()
                continue
            now = sysfs_signature(self.sysfs)
            if now != self._last:
                self._last = now
                self._call()

    def _call(self) -> None:
        try:
            self.changed()
        except Exception:  # the app may be closing; the watcher must not die noisily
            log.exception("disk watcher callback failed")

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        """Start watching again; what changed meanwhile is reported at the next look."""
        self._paused.clear()
        if self._observer is not None:
            self._heard.set()

    def stop(self) -> None:
        self._stop.set()
        if self._observer is not None:
            try:
                self._observer.stop()
            except Exception:
                log.debug("udev observer did not stop cleanly", exc_info=True)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

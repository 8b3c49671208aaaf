"""Loop devices for tests: attach image files, and undo everything that was done with them."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from kit.diskcompare import run, umount


def _backing_file(node: str) -> str | None:
    """The file behind a loop device, or None if it is not attached."""
    sysfile = Path("/sys/block") / Path(node).name / "loop" / "backing_file"
    try:
        text = sysfile.read_text().strip()
    except OSError:
        return None
    return text.removesuffix(" (deleted)")


def _mounts() -> list[tuple[str, str]]:
    """(source, mountpoint) of every mount, from /proc/self/mountinfo."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        mountpoint = fields[4].encode().decode("unicode_escape")
        out.append((fields[sep + 2], mountpoint))
    return out


class Loops:
    """Attaches image files as loop devices and undoes everything it did.

    ``mount_root`` is where builders make their mountpoints; on cleanup anything
    mounted below it, or from one of our loops (or their partitions), is unmounted,
    then each loop is detached if it is still backed by our file.
    """

    def __init__(self, root: Path) -> None:
        self.mount_root = root / "mnt"
        self.mount_root.mkdir(parents=True, exist_ok=True)
        self._attached: dict[str, str] = {}  # node -> backing file (resolved)

    @property
    def nodes(self) -> list[str]:
        return list(self._attached)

    def attach(self, path: Path, sector_size: int = 512, read_only: bool = False) -> str:
        """``losetup --find --show`` the file; partition nodes via partx (no kernel parser)."""
        argv = ["losetup", "--find", "--show"]
        if sector_size != 512:
            argv += ["-b", str(sector_size)]
        if read_only:
            argv.append("-r")
        argv.append(str(path))
        node = run(*argv).stdout.strip()
        self._attached[node] = str(Path(path).resolve())
        # a loop number may still carry stale partitions of its previous user
        run("partx", "-d", node, check=False)
        run("partx", "-a", node, check=False)
        return node

    def mountpoint(self, name: str) -> Path:
        """A fresh directory below ``mount_root``."""
        path = self.mount_root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _ours(self, node: str) -> bool:
        return _backing_file(node) == self._attached.get(node)

    def _unmount_for(self, nodes: list[str]) -> list[str]:
        errors: list[str] = []
        pattern = re.compile(
            "^(" + "|".join(re.escape(n) for n in nodes) + r")(p\d+)?$" if nodes else "$^"
        )
        root = str(self.mount_root)
        targets = [
            mp
            for src, mp in _mounts()
            if pattern.match(src) or mp == root or mp.startswith(root + "/")
        ]
        for mp in sorted(set(targets), key=len, reverse=True):  # deepest first
            try:
                umount(mp)
            except AssertionError as e:
                errors.append(str(e))
        return errors

    def detach(self, node: str) -> None:
        """Unmount what is mounted from ``node``, drop its partitions and detach it."""
        errors = self._unmount_for([node]) if self._ours(node) else []
        self._detach(node)
        if errors:
            raise RuntimeError("; ".join(errors))

    def _detach(self, node: str) -> None:
        if node not in self._attached:
            raise ValueError(f"{node} was not attached by this fixture")
        if self._ours(node):
            run("partx", "-d", node, check=False)
            proc = run("losetup", "-d", node, check=False)
            if proc.returncode != 0 and self._ours(node):
                raise RuntimeError(f"losetup -d {node}: {proc.stderr.strip()}")
        del self._attached[node]

    def cleanup(self) -> None:
        errors = self._unmount_for([n for n in self._attached if self._ours(n)])
        for node in list(self._attached):
            try:
                self._detach(node)
            except (RuntimeError, ValueError) as e:
                errors.append(str(e))
        with contextlib.suppress(OSError):
            for d in sorted(self.mount_root.iterdir(), reverse=True):
                d.rmdir()
        if errors:
            raise RuntimeError("loops cleanup: " + "; ".join(errors))

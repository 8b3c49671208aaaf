"""Shared test setup: skip ``root`` tests when they cannot run; the ``loops`` fixture."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.loops import Loops

# The ISO-in-a-VM tests run with `make vm-test` only (they need the ISO and qemu).
collect_ignore = [] if os.environ.get("APPLIANCE_VM_TEST") == "1" else ["vm"]

#: tools the ``root`` tests call
ROOT_TOOLS = (
    "losetup", "partx", "sfdisk", "sgdisk", "blkid", "blockdev", "mount", "umount",
    "mkfs.fat", "fsck.fat", "mcopy", "mdir", "mkfs.ext4", "e2fsck", "mkfs.xfs",
    "xfs_repair", "mkfs.btrfs", "btrfs", "mkfs.ntfs", "ntfs-3g", "ntfsfix", "mkswap",
)  # fmt: skip


def _root_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not Path("/dev/loop-control").exists():
        return "needs loop devices (/dev/loop-control)"
    missing = [t for t in ROOT_TOOLS if shutil.which(t) is None]
    if missing:
        return "missing tools: " + ", ".join(missing)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _root_skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("root") is not None:
            item.add_marker(skip)


@pytest.fixture
def loops(tmp_path: Path) -> Iterator[Loops]:
    """Attach image files as loop devices; everything is undone at teardown."""
    lp = Loops(tmp_path)
    try:
        yield lp
    finally:
        lp.cleanup()

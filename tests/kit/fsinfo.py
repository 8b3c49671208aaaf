"""A filesystem's own idea of its size, read with its own tools (independent of appliance)."""

from __future__ import annotations

import re
import subprocess


def fs_size(node: str, fstype: str) -> int:
    """Bytes the filesystem on `node` spans, as its superblock says."""

    def out(*args: str) -> str:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout

    if fstype.startswith("ext"):
        text = out("dumpe2fs", "-h", node)
        count = int(re.search(r"Block count:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
        block = int(re.search(r"Block size:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
        return count * block
    if fstype == "ntfs":
        text = out("ntfsresize", "--info", "--force", "--no-progress-bar", node)
        return int(re.search(r"Current volume size: (\d+)", text).group(1))  # type: ignore[union-attr]
    if fstype == "xfs":
        text = out("xfs_db", "-r", "-c", "sb 0", "-c", "p dblocks blocksize", node)
        values = dict(line.split(" = ") for line in text.splitlines() if " = " in line)
        return int(values["dblocks"]) * int(values["blocksize"])
    if fstype == "btrfs":
        text = out("btrfs", "inspect-internal", "dump-super", node)
        return int(re.search(r"^total_bytes\s+(\d+)", text, re.M).group(1))  # type: ignore[union-attr]
    raise ValueError(fstype)

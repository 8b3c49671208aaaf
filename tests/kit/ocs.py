"""Clonezilla images made by Debian's own Clonezilla (`ocs-sr`, package clonezilla with
drbl) from loop disks, in batch mode, into a folder of our choosing (`-or`).

Nothing here imports the appliance package.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def ocs_save(
    node: str,
    repo: Path,
    name: str,
    *,
    compress: str = "-z9p",
    split_mb: int = 0,
    timeout: float = 600,
) -> Path:
    """`ocs-sr savedisk` of the disk `node` as image `name` in `repo`: `compress` is ocs-sr's
    option (-z1p pigz, -z9p zstdmt, -z0 none...), `split_mb` its -i (0: never split).
    No file-system check (-sfsck), no image check after saving (-scs), no encryption."""
    repo.mkdir(parents=True, exist_ok=True)
    args = [
        "ocs-sr", "-b", "-or", str(repo), "-q2", "-j2", compress, "-i", str(split_mb),
        "-sfsck", "-scs", "-senc", "-p", "true", "savedisk", name, Path(node).name,
    ]  # fmt: skip
    proc = subprocess.run(
        args, capture_output=True, text=True, errors="replace", timeout=timeout, check=False
    )
    folder = repo / name
    if proc.returncode != 0 or not (folder / "clonezilla-img").is_file():
        tail = "\n".join(proc.stdout.splitlines()[-30:])
        raise AssertionError(f"ocs-sr savedisk of {node} failed ({proc.returncode}):\n{tail}")
    return folder

"""Clonezilla image folders made by Debian 12's real `ocs-sr` (packages clonezilla, drbl) from
loop disks, for the shelf tests.

`ocs-sr` runs here non-interactively: `-batch -nogui` (no prompt), `-or DIR` (its image root,
instead of /home/partimag), `-p true` (its "postaction" is a command; the default reboots),
`-scs` (no restorability check: that one restores to /dev/null through partclone), `-sfsck`,
`-senc`. Each call saves one disk as `DIR/NAME` exactly as a technician's Clonezilla would.

Nothing here imports the appliance package.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

from kit.diskbuild import (
    LoopAttacher,
    MiB,
    _mkfs_ext4,
    _populate_ext4,
    _rng,
    sparse_file,
    write_boot_code,
    write_gap_marker,
)
from kit.diskcompare import flush_all, partition_nodes, run

OCS_SR = "/usr/sbin/ocs-sr"
MBR_DISK_SIZE = 300 * MiB
RAW_DISK_SIZE = 80 * MiB
#: bytes of seeded noise at the start of the unformatted partition (the rest stays zero)
RAW_NOISE = 3 * MiB + 512


def have_ocs_sr() -> bool:
    return Path(OCS_SR).exists() and shutil.which("partclone.ext4") is not None


def ocs_save(node: str, root: Path, name: str, *options: str) -> Path:
    """Save disk `node` with `ocs-sr ... savedisk NAME DISK` into `root/NAME`.

    `options` pick the compressor (`-z9p` zstd, `-z1p` gzip, ...), the split size (`-i MB`,
    0 = no split) and the saver (`-q2` partclone, `-q1` dd). Returns the image folder.
    """
    root.mkdir(parents=True, exist_ok=True)
    argv = [OCS_SR, "-batch", "-nogui", "-sfsck", "-senc", "-scs", "-j2", *options]
    argv += ["-or", str(root), "-p", "true", "savedisk", name, Path(node).name]
    proc = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=900
    )
    folder = root / name
    log = (proc.stdout + proc.stderr).decode(errors="replace")
    if proc.returncode != 0 or "saved successfully" not in log:
        raise AssertionError(f"ocs-sr failed ({proc.returncode}):\n{log[-3000:]}")
    return folder


def raw_noise(seed: int) -> bytes:
    """The bytes at the start of the unformatted partition."""
    return _rng(seed, "raw-partition").randbytes(RAW_NOISE)


def build_mbr_logical_disk(loops: LoopAttacher, path: Path, *, seed: int = 0) -> str:
    """DOS disk (300 MiB): p1 ext4 "boot" (bootable), p2 extended holding p5 ext4 "logical"
    and p6 unformatted (seeded noise, then zeros); boot code and after-MBR gap markers."""
    sparse_file(path.parent, path.name, MBR_DISK_SIZE)
    node = loops.attach(path)
    disk_id = "0x" + _rng(seed, "mbr-logical-id").randbytes(4).hex()
    script = (
        f"label: dos\nlabel-id: {disk_id}\n"
        "start=2048, size=100MiB, type=83, bootable\n"
        "size=180MiB, type=5\n"
        f"{node}p5 : size=120MiB, type=83\n"
        f"{node}p6 : size=40MiB, type=da\n"
    )
    run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", node, input=script)
    parts = partition_nodes(node)
    _mkfs_ext4(parts[1], "boot", seed, "cz-boot")
    _populate_ext4(parts[1], loops, seed, "cz-boot")
    _mkfs_ext4(parts[5], "logical", seed, "cz-logical")
    _populate_ext4(parts[5], loops, seed, "cz-logical")
    _write(parts[6], raw_noise(seed))
    write_gap_marker(node, seed)
    write_boot_code(node, seed)
    flush_all(node)
    return node


def build_raw_disk(loops: LoopAttacher, path: Path, *, seed: int = 0) -> str:
    """GPT disk (80 MiB): p1 unformatted (seeded noise), p2 ext4 "small"."""
    sparse_file(path.parent, path.name, RAW_DISK_SIZE)
    node = loops.attach(path)
    label = _uuid_like(seed)
    script = (
        f"label: gpt\nlabel-id: {label}\n"
        "start=2048, size=16MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=raw\n"
        "size=40MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=small\n"
    )
    run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", node, input=script)
    parts = partition_nodes(node)
    _write(parts[1], raw_noise(seed))
    _mkfs_ext4(parts[2], "small", seed, "cz-small")
    _populate_ext4(parts[2], loops, seed, "cz-small")
    write_boot_code(node, seed)
    flush_all(node)
    return node


def _uuid_like(seed: int) -> str:
    h = random.Random(f"{seed}:raw-disk").randbytes(16).hex().upper()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def _write(part: str, data: bytes) -> None:
    with open(part, "r+b") as f:
        f.write(data)
        f.flush()

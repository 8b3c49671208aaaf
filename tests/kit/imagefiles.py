"""Image files as people get them, made by the real tools: a partitioned disk as an `.img`
(real sfdisk table, real ext4 with files), the same as `.img.xz` (xz) and in a `.zip`, and a
hybrid `.iso` made by xorriso with isolinux's MBR (as the project's own ISO is).

Nothing here imports the appliance package.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import zipfile
from pathlib import Path

from kit.diskbuild import LoopAttacher, MiB, payload, sparse_file
from kit.diskcompare import flush_all, mounted, partition_nodes, run

ISOHYBRID_MBR = Path("/usr/lib/ISOLINUX/isohdpfx.bin")
ISOLINUX_BIN = Path("/usr/lib/ISOLINUX/isolinux.bin")

#: the partitioned disk: an MBR table, one ext4 partition from 1 MiB to PART_END, zeros after
DISK_SIZE = 48 * MiB
PART_END = 40 * MiB


class Detacher(LoopAttacher):
    def detach(self, node: str) -> None: ...


def partitioned_image(
    loops: Detacher,
    directory: Path,
    *,
    size: int = DISK_SIZE,
    part_end: int = PART_END,
    label: str = "dos",
) -> Path:
    """`disk.img`: an MBR (or GPT) disk with one ext4 partition holding files (and a random
    file, so that compressed forms are not trivial); after `part_end` every byte is zero but
    a GPT's backup at the end."""
    path = sparse_file(directory, "disk.img", size)
    node = loops.attach(path)
    script = f"label: {label}\nstart=2048, size={(part_end - MiB) // 512}, type=L\n"
    run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", node, input=script)
    part = partition_nodes(node)[1]
    run("mkfs.ext4", "-q", "-L", "written", part)
    with mounted(part, "ext4", readonly=False, mountpoint=loops_mountpoint(loops)) as root:
        for name, data in payload(7, "write").keep.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        (root / "noise.bin").write_bytes(random.Random(7).randbytes(6 * MiB))
    flush_all(node)
    loops.detach(node)
    return path


def loops_mountpoint(loops: Detacher) -> Path:
    root = Path(getattr(loops, "mount_root", "/tmp"))
    mp = root / "imagefiles"
    mp.mkdir(parents=True, exist_ok=True)
    return mp


def xz_file(raw: Path) -> Path:
    """`NAME.xz` beside `raw`, by xz itself (one thread: one stream with its index)."""
    out = raw.with_name(raw.name + ".xz")
    with open(out, "wb") as handle:
        subprocess.run(["xz", "-c", "-1", "-T1", str(raw)], stdout=handle, check=True)
    return out


def zip_file(raw: Path, *extra: Path) -> Path:
    """`NAME.zip` holding the image and `extra` files (deflated, as people zip)."""
    out = raw.with_suffix(".zip")
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(raw, raw.name)
        for path in extra:
            archive.write(path, path.name)
    return out


def hybrid_iso(directory: Path) -> Path:
    """`live.iso`: an isohybrid ISO (isolinux El Torito boot, the isohdpfx MBR) with files."""
    tree = directory / "iso-tree"
    (tree / "isolinux").mkdir(parents=True)
    shutil.copy(ISOLINUX_BIN, tree / "isolinux" / "isolinux.bin")
    (tree / "isolinux" / "isolinux.cfg").write_text("default live\nlabel live\n  kernel vmlinuz\n")
    for name, data in payload(11, "iso").keep.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    (tree / "noise.bin").write_bytes(random.Random(11).randbytes(3 * MiB))
    out = directory / "live.iso"
    run(
        "xorriso", "-as", "mkisofs", "-quiet", "-o", str(out), "-V", "WRITETEST",
        "-isohybrid-mbr", str(ISOHYBRID_MBR), "-b", "isolinux/isolinux.bin",
        "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4",
        "-boot-info-table", str(tree),
    )  # fmt: skip
    return out

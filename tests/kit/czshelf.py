"""A shelf of near-identical Clonezilla images, as a technician's shelf of one office's
machines: one GPT disk (kit.diskbuild.build_gpt_disk: FAT32 ESP, ext4, NTFS, swap) saved by
Debian's real `ocs-sr` (zstd, no split), then copies of it each changed by a few files
(kit.diskbuild.mutate_disk) and saved again. For the import tests and the shelf measurement
(bench/shelf_import.py).

Nothing here imports the appliance package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kit.clonezilla import ocs_save
from kit.diskbuild import LoopAttacher, build_gpt_disk, copy_image, mutate_disk, write_raw
from kit.diskcompare import flush_all

#: the GPT gap (LBA 34..2047) is zeroed: Clonezilla saves that gap on MBR disks only
GAP = (34 * 512, (2048 - 34) * 512)


@dataclass
class CzShelf:
    folder: Path  # holds one Clonezilla image folder per machine
    disks: dict[str, tuple[str, Path]] = field(default_factory=dict)  # image -> (node, file)


def build_shelf(loops: LoopAttacher, root: Path, count: int, prefix: str = "pc") -> CzShelf:
    """`count` Clonezilla images `prefix`1, `prefix`2, ... of disks that differ by a few
    files each (image 1 is the base disk; image k>1 is a copy of it mutated with seed k)."""
    shelf = CzShelf(root / "shelf")
    base = root / f"{prefix}1.img"
    node = build_gpt_disk(loops, base)
    write_raw(node, GAP[0], bytes(GAP[1]))
    flush_all(node)
    for number in range(1, count + 1):
        name = f"{prefix}{number}"
        if number > 1:
            path = copy_image(base, root / f"{name}.img")
            node = loops.attach(path)
            mutate_disk(node, seed=number)
            flush_all(node)
        else:
            path = base
        ocs_save(node, shelf.folder, name, "-q2", "-z9p", "-i", "0")
        shelf.disks[name] = (node, path)
    return shelf

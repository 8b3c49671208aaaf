"""A large, nearly empty ext4: its inode tables are most of partclone's "used" map, and the
part no inode ever used (each group's bg_itable_unused) is known zeros. The save does not
read them; the restore writes zeros there (a target full of old bytes included), and the
restored filesystem passes e2fsck with every file equal to the source's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from kit.cli import appliance, result_json
from kit.diskbuild import sparse_file
from kit.diskcompare import mounted, partition_nodes, read_bytes
from kit.filetrees import digests, files_of, fill
from kit.loops import Loops

from appliance.fs.usedmap import used_map

pytestmark = pytest.mark.root

GiB = 1 << 30
SIZE = 24 * GiB  # sparse: a few hundred MB are ever written
START = 1 << 20


def _disk(loops: Loops, folder: Path) -> str:
    node = loops.attach(sparse_file(folder, "source.img", SIZE))
    subprocess.run(["sfdisk", "-q", node], input=b"label: gpt\nstart=2048, type=linux\n",
                   check=True)  # fmt: skip
    part = partition_nodes(node)[1]
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "big", part], check=True)
    many = {f"churn/f{n:04d}.txt": b"x" * 100 for n in range(3000)}  # inodes used, then freed
    fill(loops, part, "ext4", {**files_of(7), **many})
    with mounted(part, "ext4", readonly=False, mountpoint=folder / "m") as root:
        subprocess.run(["rm", "-rf", str(root / "churn")], check=True)
    return node


def read_from(node: str) -> int:
    """Bytes the kernel has read from the whole disk `node` so far (/sys/block/X/stat)."""
    fields = Path(f"/sys/block/{Path(node).name}/stat").read_text().split()
    return int(fields[2]) * 512


def test_unused_inode_tables_are_not_read_and_restore_as_zeros(tmp_path: Path) -> None:
    loops = Loops(tmp_path)
    try:
        source = _disk(loops, tmp_path)
        part = partition_nodes(source)[1]
        size = int(subprocess.run(["blockdev", "--getsize64", part], capture_output=True,
                                  text=True, check=True).stdout)  # fmt: skip
        umap = used_map(part, "ext4", size)
        zeros = sum(n for _, n in umap.zeros)
        assert zeros > 256 << 20  # 192 groups' inode tables, nearly all unused
        for start, length in umap.zeros:  # inside the map, and zeros on the source
            assert any(s <= start and start + length <= s + n for s, n in umap.ranges)
            assert read_bytes(part, start, min(length, 1 << 20)) == bytes(min(length, 1 << 20))

        before = read_from(source)
        proc = appliance(
            "save", source, "--repo", str(tmp_path / "repo"), "--image", "big", "--create",
            "--json", "--progress", "json",
        )  # fmt: skip
        result = result_json(proc)
        # the kernel's own count of what was read from the disk: the known zeros were not
        # (the rest, and a little more: partclone's and dumpe2fs's reads of the metadata)
        assert read_from(source) - before < result["used_bytes"] - zeros + (64 << 20)
        events = [json.loads(x) for x in proc.stdout.splitlines() if '"type": "progress"' in x]
        assert events[-1]["done"] == events[-1]["total"] == result["used_bytes"]
        assert result["proofs"]["p1"]["result"] == "passed"

        target = loops.attach(sparse_file(tmp_path, "target.img", SIZE))
        with open(target, "r+b", buffering=0) as disk:  # old bytes where the zeros go
            for start, length in umap.zeros[:8]:
                disk.seek(START + start)
                disk.write(b"\xab" * min(length, 1 << 20))
        appliance("restore", "--repo", str(tmp_path / "repo"), "--image", "big", target, "--yes")
        restored = partition_nodes(target)[1]
        for start, length in umap.zeros[:8]:
            assert read_bytes(restored, start, min(length, 1 << 20)) == bytes(min(length, 1 << 20))
        subprocess.run(["e2fsck", "-fn", restored], check=True, capture_output=True)
        with mounted(part, "ext4", mountpoint=tmp_path / "a") as a:
            want = digests(a)
        with mounted(restored, "ext4", mountpoint=tmp_path / "b") as b:
            assert digests(b) == want
    finally:
        loops.cleanup()

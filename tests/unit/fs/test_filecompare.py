"""The file comparison behind verify --against for resized partitions: every kind of
difference is named, and identical trees compare equal."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.fs.compare import diff_trees, walk


def tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "fstab").write_text("UUID=1 / ext4 defaults 0 1\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"\x7fELF" + bytes(5000))
    os.chmod(root / "bin" / "tool", 0o755)
    (root / "link").symlink_to("etc/fstab")
    os.mkfifo(root / "pipe")
    return root


def test_identical_trees_are_equal(tmp_path: Path) -> None:
    seen: list[int] = []
    a = walk(tree(tmp_path / "a"), seen.append)
    b = walk(tree(tmp_path / "b"))
    assert diff_trees(a, b) == []
    assert set(a) == {"etc", "etc/fstab", "bin", "bin/tool", "link", "pipe"}
    assert sum(seen) == len("UUID=1 / ext4 defaults 0 1\n") + 5004


def test_every_difference_is_named(tmp_path: Path) -> None:
    a_root, b_root = tree(tmp_path / "a"), tree(tmp_path / "b")
    (b_root / "etc" / "fstab").write_text("UUID=2 / ext4 defaults 0 1\n")  # same size
    os.chmod(b_root / "bin" / "tool", 0o644)
    (b_root / "link").unlink()
    (b_root / "link").symlink_to("etc/hosts")
    (b_root / "pipe").unlink()
    (b_root / "pipe").write_text("")
    (a_root / "only-in-image").write_text("x")
    (b_root / "only-on-disk").write_text("y")
    found = diff_trees(walk(a_root), walk(b_root))
    assert found == [
        "bin/tool: permissions 755 in the image, 644 on the disk",
        "etc/fstab: its content differs",
        "link: its link target differs",
        "only-in-image: missing on the disk",
        "only-on-disk: only on the disk",
        "pipe: a fifo in the image, a file on the disk",
    ]

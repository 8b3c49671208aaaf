"""A GPT image's table rebuilt for a smaller disk by sgdisk on a scratch file: applied to a
cut copy of the image, the copy is a valid GPT disk (sgdisk -v, sfdisk) with the same
partitions and its backup at the real end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from appliance.errors import ImageError
from appliance.jobs.imagefit import relocated_gpt

MiB = 1024 * 1024


def gpt_image(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        handle.truncate(size)
    script = "label: gpt\nstart=2048, size=20MiB, type=L, name=data\nsize=8MiB, type=S\n"
    subprocess.run(["sfdisk", "-q", str(path)], input=script, text=True, check=True)


def partitions(path: Path) -> list[dict[str, object]]:
    out = subprocess.run(["sfdisk", "--json", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    table = json.loads(out.stdout)["partitiontable"]
    return [{k: v for k, v in p.items() if k != "node"} for p in table["partitions"]]


def test_the_rebuilt_gpt_makes_a_cut_copy_valid(tmp_path: Path) -> None:
    image, cut = tmp_path / "disk.img", tmp_path / "cut.img"
    gpt_image(image, 48 * MiB)
    size = 40 * MiB
    cut.write_bytes(image.read_bytes()[:size])
    broken = subprocess.run(["sgdisk", "-v", str(cut)], capture_output=True, text=True)
    assert "No problems found" not in broken.stdout  # the backup lies past the end
    patch = relocated_gpt(image.read_bytes()[:MiB], size)
    assert max(patch) + len(patch[max(patch)]) == size  # the backup header is the last sector
    with open(cut, "r+b") as handle:
        for offset, data in patch.items():
            handle.seek(offset)
            handle.write(data)
    check = subprocess.run(["sgdisk", "-v", str(cut)], capture_output=True, text=True)
    assert "No problems found" in check.stdout, check.stdout
    assert partitions(cut) == partitions(image)


def test_a_head_without_a_gpt_is_a_sentence() -> None:
    """sgdisk would make a new, empty GPT there: never hand it a head without one."""
    with pytest.raises(ImageError, match="GPT header cannot be read"):
        relocated_gpt(bytes(MiB), 40 * MiB)

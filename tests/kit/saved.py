"""The starting point of many tests: a real GPT disk (tests/kit/diskbuild.py) saved as an image
in a new repository, with everything undone afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kit.cli import appliance
from kit.diskbuild import build_gpt_disk
from kit.loops import Loops


@dataclass(frozen=True)
class Saved:
    loops: Loops
    source: str  # the GPT disk's loop device
    repo: Path
    folder: Path  # where the disk's image file and the repository live


@contextmanager
def saved_gpt_disk(folder: Path, image: str = "base") -> Iterator[Saved]:
    """Build the GPT disk in `folder`, save it as `image` into `folder`/repo, yield both;
    detach and unmount all of it at the end."""
    loops = Loops(folder)
    try:
        source = build_gpt_disk(loops, folder / "source.img")
        repo = folder / "repo"
        appliance("save", source, "--repo", str(repo), "--image", image, "--create")
        yield Saved(loops, source, repo, folder)
    finally:
        loops.cleanup()

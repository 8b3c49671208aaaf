"""What a forger who can write a repository's folder does to an image: edit its manifest and
recompute the manifest's own hash, as anyone can (blake3 of the canonical JSON, no key).

Nothing here imports the appliance package: the forger has only the files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3


def own_hash(data: dict[str, Any]) -> str:
    """The manifest_hash a manifest's other fields give (sorted keys, no spaces, ASCII)."""
    rest = {key: value for key, value in data.items() if key != "manifest_hash"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return blake3.blake3(text.encode()).hexdigest()


def forge_manifest(image_dir: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Apply `edit` to the image's manifest and give it a hash that matches again."""
    path = image_dir / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    data["manifest_hash"] = own_hash(data)
    path.write_text(json.dumps(data, indent=2) + "\n")


def rename_first_partition(data: dict[str, Any]) -> None:
    """A forged partition name: what a restore would write into the target's table."""
    data["table"]["partitions"][0]["name"] = "forged"

"""images and gc on the command line."""

from __future__ import annotations

import argparse

from appliance.commands.output import print_json
from appliance.jobs.catalog import gc, list_images
from appliance.model import human_size


def run_images(args: argparse.Namespace) -> int:
    images = list_images(args.repo)
    if args.json:
        print_json({"command": "images", "images": [i.to_json() for i in images]})
        return 0
    if not images:
        print(f"The repository {args.repo} holds no images.")
        return 0
    print(f"{'NAME':24} {'SAVED':20} {'SOURCE DISK':32} {'SIZE':>9} {'USED':>9} {'STORED':>9}"
          "  STATE")
    for img in images:
        source = f"{img.disk.get('model') or '?'} {img.disk.get('serial') or ''}".strip()
        state = img.proof if img.complete and not img.problem else (
            img.problem or "INCOMPLETE (not restorable)")
        print(f"{img.name:24} {(img.finished or img.created)[:19]:20} {source[:32]:32} "
              f"{human_size(int(img.disk.get('size') or 0)):>9} {human_size(img.used_bytes):>9} "
              f"{human_size(img.stored_bytes):>9}  {state}")
    return 0


def run_gc(args: argparse.Namespace) -> int:
    result = gc(args.repo)
    if args.json:
        print_json({"command": "gc", "removed_chunks": result.removed_chunks,
                    "removed_bytes": result.removed_bytes, "kept_chunks": result.kept_chunks})
    else:
        print(f"Removed {result.removed_chunks} unused chunks ({human_size(result.removed_bytes)});"
              f" {result.kept_chunks} chunks are in use.")
    return 0

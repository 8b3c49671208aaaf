"""`appliance delete --repo R --image I [--yes] [--gc]`: remove one image.

It asks first, as restore does (type the image's name), unless --yes. The image's folder is
removed under the repository lock; its chunks stay until gc removes those no other image uses:
with --gc that runs at once, otherwise the command says how much `appliance gc` would free.
"""

from __future__ import annotations

import argparse
import sys

from appliance.cli.output import print_json
from appliance.errors import ApplianceError, SafetyRefusal
from appliance.jobs.catalog import delete_image
from appliance.jobs.imageinfo import image_info
from appliance.units import human_size


def _describe(repo: str, image: str) -> str:
    try:
        m = image_info(repo, image).manifest
    except (ApplianceError, ValueError):  # a damaged image is still deletable; say so
        return f"Image {image} in {repo} (its manifest cannot be read) will be DELETED."
    disk = f"{m.disk.model or '?'}, {human_size(m.disk.size)}"
    state = "complete" if m.complete else "incomplete"
    return (
        f"Image {image} in {repo} ({state}, saved {m.created[:19]} from {disk}, "
        f"{human_size(m.used_bytes)} used) will be DELETED."
    )


def confirm_delete(repo: str, image: str) -> None:
    if not sys.stdin.isatty():
        raise SafetyRefusal(
            f"Deleting removes image {image} for good; add --yes to confirm "
            "(there is no terminal to ask on)."
        )
    print(_describe(repo, image), file=sys.stderr)
    answer = input(f"Type {image} to delete it, anything else to stop: ").strip()
    if answer != image:
        raise SafetyRefusal(f"Nothing was deleted: you typed {answer!r}, not {image}.")


def run_delete(args: argparse.Namespace) -> int:
    if not args.yes:
        confirm_delete(args.repo, args.image)
    result = delete_image(args.repo, args.image, run_gc=args.gc)
    gc = result.gc
    if args.json:
        print_json(
            {
                "command": "delete",
                "image": args.image,
                "deleted": True,
                "gc_ran": bool(gc and not gc.dry_run),
                "gc_chunks": gc.removed_chunks if gc else None,
                "gc_bytes": gc.removed_bytes if gc else None,
                "gc_refused": result.gc_refused,
                "gc_skipped": gc.skipped_json() if gc else [],
            }
        )
        return 0
    print(f"Deleted image {args.image}.")
    if gc is None:
        print(f"Its chunks stay for now: {result.gc_refused}")
    elif gc.dry_run:
        print(
            f"`appliance gc --repo {args.repo}` would free {human_size(gc.removed_bytes)} "
            f"({gc.removed_chunks} chunks no image uses)."
        )
    else:
        print(
            f"gc removed {gc.removed_chunks} chunks no image uses ({human_size(gc.removed_bytes)})."
        )
    return 0

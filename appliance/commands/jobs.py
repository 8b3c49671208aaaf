"""save, restore and verify on the command line."""

from __future__ import annotations

import argparse
import sys
import threading
import time

from appliance.commands.output import make_progress, print_json, rate
from appliance.errors import SafetyRefusal
from appliance.jobs.restore import RestorePlan, plan_restore, restore
from appliance.jobs.save import save
from appliance.jobs.verify import verify_against, verify_image
from appliance.model import human_size


def run_save(args: argparse.Namespace, cancel: threading.Event) -> int:
    progress = make_progress(args.progress)
    started = time.monotonic()
    manifest = save(args.source, args.repo, args.image, level=args.level, resume=args.resume,
                    progress=progress, cancel=cancel)
    seconds = time.monotonic() - started
    stats = manifest.stats
    if args.json:
        print_json({"command": "save", "image": manifest.name, "seconds": round(seconds, 3),
                    **stats})
    else:
        print(f"Saved {manifest.disk.get('model') or manifest.disk['name']} as image "
              f"{manifest.name}: {rate(int(stats['used_bytes']), seconds)}; "
              f"{stats['new_chunks']} new chunks ({human_size(int(stats['new_bytes']))}), "
              f"{stats['reused_chunks']} already stored.")
        if stats.get("read_errors"):
            print(f"Warning: {len(stats['read_errors'])} unreadable areas were saved as zeros; "
                  "see the image's log.txt.")
    return 0


def describe_plan(plan: RestorePlan) -> str:
    target = plan.target
    manifest = plan.image.manifest
    lines = [f"Image {manifest.name}: saved {manifest.created} from "
             f"{manifest.disk.get('model') or '?'} (serial {manifest.disk.get('serial') or '-'}, "
             f"{human_size(int(manifest.disk['size']))}), {human_size(manifest.used_bytes)} used.",
             f"Target {target.describe()} will be ERASED. It now holds:"]
    if not target.partitions:
        lines.append("  no partitions")
    for part in target.partitions:
        lines.append(f"  partition {part.number}: {human_size(part.size)} "
                     f"{part.fstype or ''} {part.label or ''}".rstrip())
    lines.append("It will hold:")
    for region in manifest.regions:
        if region.partition is not None:
            lines.append(f"  partition {region.partition}: {human_size(region.size)} at "
                         f"{region.start} {region.fstype or 'unformatted'} "
                         f"{region.label or ''} ({region.method})".rstrip())
    if not plan.same_size:
        lines.append(f"  the GPT backup moves to the end of the larger target; "
                     f"{human_size(target.size - int(manifest.disk['size']))} stay unallocated.")
    return "\n".join(lines)


def plan_json(plan: RestorePlan) -> dict[str, object]:
    manifest = plan.image.manifest
    return {"command": "restore", "image": manifest.name, "target": plan.target.node,
            "target_size": plan.target.size, "image_disk_size": manifest.disk["size"],
            "same_size": plan.same_size, "bytes": plan.total,
            "partitions": [{"number": r.partition, "start": r.start, "size": r.size,
                            "fstype": r.fstype, "method": r.method}
                           for r in manifest.regions if r.partition is not None]}


def confirm(plan: RestorePlan) -> None:
    name = plan.target.name
    if not sys.stdin.isatty():
        raise SafetyRefusal(f"Restoring erases {plan.target.describe()}; add --yes to confirm "
                            "(there is no terminal to ask on).")
    print(describe_plan(plan), file=sys.stderr)
    answer = input(f"Type {name} to erase it and restore, anything else to stop: ").strip()
    if answer != name:
        raise SafetyRefusal(f"Nothing was written: you typed {answer!r}, not {name}.")


def run_restore(args: argparse.Namespace, cancel: threading.Event) -> int:
    plan = plan_restore(args.repo, args.image, args.target)
    if args.dry_run:
        if args.json:
            print_json(plan_json(plan))
        else:
            print(describe_plan(plan))
        return 0
    if not args.yes:
        confirm(plan)
    progress = make_progress(args.progress)
    started = time.monotonic()
    restore(plan, progress=progress, cancel=cancel)
    seconds = time.monotonic() - started
    if args.json:
        print_json({**plan_json(plan), "seconds": round(seconds, 3)})
    else:
        print(f"Restored image {plan.image.manifest.name} onto {plan.target.node}: "
              f"{rate(plan.total, seconds)}; every chunk was checked.")
    return 0


def run_verify(args: argparse.Namespace, cancel: threading.Event) -> int:
    progress = make_progress(args.progress)
    started = time.monotonic()
    if args.against:
        result = verify_against(args.repo, args.image, args.against, progress=progress,
                                cancel=cancel)
        what = f"{args.against} holds the same data as image {args.image}"
    else:
        result = verify_image(args.repo, args.image, progress=progress, cancel=cancel)
        what = f"Image {args.image} is intact: {result.chunks} chunks checked"
    seconds = time.monotonic() - started
    if args.json:
        print_json({"command": "verify", "image": args.image, "against": args.against,
                    "ok": True, "chunks": result.chunks, "bytes": result.bytes_checked,
                    "skipped": result.skipped, "seconds": round(seconds, 3)})
    else:
        print(f"{what} ({rate(result.bytes_checked, seconds)}).")
        for skipped in result.skipped:
            print(f"Not compared: {skipped}.")
    return 0

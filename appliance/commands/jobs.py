"""save, restore and verify on the command line."""

from __future__ import annotations

import argparse
import sys
import threading
import time

from appliance.commands.output import make_progress, print_json, rate
from appliance.errors import SafetyRefusal
from appliance.jobs.clone import clone, plan_clone
from appliance.jobs.proof import NO_CHECK
from appliance.jobs.restore import RestorePlan, plan_restore, restore
from appliance.jobs.save import save
from appliance.jobs.verify import verify_against, verify_image
from appliance.manifest import Region
from appliance.model import Disk, human_size


def run_save(args: argparse.Namespace, cancel: threading.Event) -> int:
    progress = make_progress(args.progress)
    started = time.monotonic()
    manifest = save(args.source, args.repo, args.image, level=args.level, resume=args.resume,
                    progress=progress, cancel=cancel, check=not args.no_check)
    seconds = time.monotonic() - started
    stats = manifest.stats
    for line in proof_warnings(manifest.regions):
        print(f"Warning: {line}", file=sys.stderr)
    if args.json:
        print_json({"command": "save", "image": manifest.name, "seconds": round(seconds, 3),
                    **stats, "proofs": {r.name: r.proof for r in manifest.regions
                                        if r.proof is not None}})
    else:
        print(f"Saved {manifest.disk.get('model') or manifest.disk['name']} as image "
              f"{manifest.name}: {rate(int(stats['used_bytes']), seconds)}; "
              f"{stats['new_chunks']} new chunks ({human_size(int(stats['new_bytes']))}), "
              f"{stats['reused_chunks']} already stored.")
        if stats.get("read_errors"):
            print(f"Warning: {len(stats['read_errors'])} unreadable areas were saved as zeros; "
                  "see the image's log.txt.")
    return 0


def proof_warnings(regions: list[Region]) -> list[str]:
    """One line per partition whose image was not proven, or failed its check."""
    lines: list[str] = []
    for region in regions:
        found = region.proof or {}
        what = f"{region.describe()}: {found.get('tool')}"
        if found.get("result") == "failed" and found.get("source") == "failed":
            lines.append(f"{what} finds errors on the source disk too; the partition was "
                         "saved whole, a faithful copy (repair it before relying on it).")
        elif found.get("result") == "failed":
            lines.append(f"{what} failed on the image, as its used-block map was wrong; "
                         "the partition was saved again whole.")
        elif found.get("result") == "skipped" and found.get("detail") != NO_CHECK:
            lines.append(f"{what} could not run, the image is unproven: "
                         f"{found.get('detail')}")
    return lines


def describe_target(target: Disk) -> list[str]:
    lines = [f"Target {target.describe()} will be ERASED. It now holds:"]
    if not target.partitions:
        lines.append("  no partitions")
    for part in target.partitions:
        lines.append(f"  partition {part.number}: {human_size(part.size)} "
                     f"{part.fstype or ''} {part.label or ''}".rstrip())
    return lines


def describe_plan(plan: RestorePlan) -> str:
    manifest = plan.image.manifest
    lines = [f"Image {manifest.name}: saved {manifest.created} from "
             f"{manifest.disk.get('model') or '?'} (serial {manifest.disk.get('serial') or '-'}, "
             f"{human_size(int(manifest.disk['size']))}), {human_size(manifest.used_bytes)} used.",
             *describe_target(plan.target), "It will hold:"]
    lines += [f"  {line}" for line in plan.describe()]
    return "\n".join(lines)


def plan_json(plan: RestorePlan) -> dict[str, object]:
    manifest = plan.image.manifest
    return {"command": "restore", "image": manifest.name, "target": plan.target.node,
            "target_size": plan.target.size, "image_disk_size": manifest.disk["size"],
            "same_size": plan.same_size, "bytes": plan.total, "fit": plan.fit.to_json()}


def confirm(target: Disk, description: str, job: str) -> None:
    name = target.name
    if not sys.stdin.isatty():
        raise SafetyRefusal(f"{job} erases {target.describe()}; add --yes to confirm "
                            "(there is no terminal to ask on).")
    print(description, file=sys.stderr)
    answer = input(f"Type {name} to erase it, anything else to stop: ").strip()
    if answer != name:
        raise SafetyRefusal(f"Nothing was written: you typed {answer!r}, not {name}.")


def run_restore(args: argparse.Namespace, cancel: threading.Event) -> int:
    plan = plan_restore(args.repo, args.image, args.target, grow=args.grow)
    if args.dry_run:
        if args.json:
            print_json(plan_json(plan))
        else:
            print(describe_plan(plan))
        return 0
    if not args.yes:
        confirm(plan.target, describe_plan(plan), "Restoring")
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


def run_clone(args: argparse.Namespace, cancel: threading.Event) -> int:
    progress = make_progress(args.progress)
    plan = plan_clone(args.source, args.target, grow=args.grow, progress=progress)
    description = "\n".join([*describe_target(plan.target), *plan.describe()])
    if args.dry_run:
        if args.json:
            print_json(plan.to_json())
        else:
            print(description)
        return 0
    if not args.yes:
        confirm(plan.target, description, "Cloning")
    started = time.monotonic()
    clone(plan, progress=progress, cancel=cancel)
    seconds = time.monotonic() - started
    if args.json:
        print_json({**plan.to_json(), "seconds": round(seconds, 3)})
    else:
        print(f"Cloned {plan.source.node} onto {plan.target.node}: {rate(plan.total, seconds)}.")
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

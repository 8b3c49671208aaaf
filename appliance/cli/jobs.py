"""save, restore and verify on the command line."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.cli.output import fit80, make_progress, print_json
from appliance.disk.model import Disk
from appliance.errors import WARNINGS_EXIT, SafetyRefusal, UsageError
from appliance.jobs.plantext import PlanText, clone_text, restore_text, saved_lines
from appliance.jobs.restore import RestorePlan, plan_restore, restore, restore_steps
from appliance.jobs.verify import verify_against, verify_image
from appliance.jobs.writeplan import steps_json
from appliance.repo.image import authenticity_note
from appliance.shelf.clonezilla import find_folder, is_clonezilla
from appliance.units import rate

WIDTH = 80


def run_save(args: argparse.Namespace, cancel: threading.Event) -> int:
    from appliance.jobs.save import save  # each job loads its own modules only

    progress = make_progress(args.progress)
    started = time.monotonic()
    manifest = save(
        args.source,
        args.repo,
        args.image,
        level=args.level,
        resume=args.resume,
        progress=progress,
        cancel=cancel,
        create=args.create,
        allow_ram=args.allow_ram,
        check=not args.no_check,
        workers=getattr(args, "workers", None),
    )
    seconds = time.monotonic() - started
    stats = manifest.figures
    warnings = list(stats.warnings)
    if args.json:
        print_json(
            {
                "command": "save",
                "image": manifest.name,
                "seconds": round(seconds, 3),
                **stats.to_dict(),
                "warnings": warnings,
                "proofs": {r.name: r.proof for r in manifest.regions if r.proof is not None},
            }
        )
    else:
        print(fit80("\n".join(saved_lines(manifest, seconds))))
    print_warnings(warnings)
    return WARNINGS_EXIT if warnings else 0


def print_warnings(warnings: list[str]) -> None:
    """One line each on stderr, within 80 columns (the full sentences are in log.txt)."""
    sys.stdout.flush()
    for warning in warnings:
        line = f"warning: {warning}"
        print(line if len(line) <= WIDTH else line[: WIDTH - 3] + "...", file=sys.stderr)
    sys.stderr.flush()


def describe_plan(text: PlanText) -> str:
    """The plan as the confirmation and --dry-run print it (appliance.jobs.plantext's lines)."""
    lines = [
        f"{text.source[0].upper()}{text.source[1:]}.",
        f"Target {text.target}",
        "will be ERASED. It now holds:",
        *(f"  {line}" for line in text.target_now),
        "It will hold:",
        *(f"  {line}" for line in text.layout),
    ]
    return fit80("\n".join(lines))


def plan_json(plan: RestorePlan) -> dict[str, object]:
    manifest = plan.image.manifest
    return {
        "command": "restore",
        "image": manifest.name,
        "target": plan.target.node,
        "target_size": plan.target.size,
        "image_disk_size": manifest.disk.size,
        "same_size": plan.same_size,
        "bytes": plan.total,
        "fit": plan.fit.to_json(),
    }


def confirm(target: Disk, description: str, job: str) -> None:
    name = target.name
    if not sys.stdin.isatty():
        raise SafetyRefusal(
            f"{job} erases {target.describe()}; add --yes to confirm "
            "(there is no terminal to ask on)."
        )
    print(description, file=sys.stderr)
    answer = input(f"Type {name} to erase it, anything else to stop: ").strip()
    if answer != name:
        raise SafetyRefusal(f"Nothing was written: you typed {answer!r}, not {name}.")


def previewed_or_confirmed(
    args: argparse.Namespace,
    text: PlanText,
    target: Disk,
    verb: str,
    plan_json: Callable[[], dict[str, Any]],
) -> bool:
    """True when --dry-run printed the plan (the job does not run); otherwise the typed
    confirmation is asked, unless --yes."""
    if args.dry_run:
        if args.json:
            print_json(plan_json())
        else:
            print("\n".join([describe_plan(text), "Steps:", *text.steps]))
        return True
    if not args.yes:
        confirm(target, describe_plan(text), verb)
    return False


def run_restore(args: argparse.Namespace, cancel: threading.Event) -> int:
    if isinstance(args.target, list):  # `restore ... TARGET [TARGET ...]`
        if len(args.target) > 1:
            from appliance.cli.restoremany import run_restore_many

            return run_restore_many(args, cancel)
        args.target = args.target[0]
    folder = find_folder(args.repo, args.image)
    if folder is not None:  # a Clonezilla image folder
        return run_shelf_restore(args, cancel, folder)
    plan = plan_restore(args.repo, args.image, args.target, grow=args.grow)
    text = restore_text(plan)
    if previewed_or_confirmed(
        args,
        text,
        plan.target,
        "Restoring",
        lambda: {**plan_json(plan), "steps": steps_json(restore_steps(plan))},
    ):
        return 0
    progress = make_progress(args.progress)
    started = time.monotonic()
    restore(
        plan,
        progress=progress,
        cancel=cancel,
        verify_first=args.verify_first,
        workers=getattr(args, "workers", None),
    )
    seconds = time.monotonic() - started
    note = authenticity_note(plan.image)
    if args.json:
        print_json({**plan_json(plan), "seconds": round(seconds, 3), "authenticated": note is None})
    else:
        print(
            f"Restored image {plan.image.manifest.name} onto {plan.target.node}: "
            f"{rate(plan.total, seconds)}; every chunk was checked."
        )
        if note is not None:
            print(f"note: {note}.", file=sys.stderr)
    return 0


def run_shelf_restore(args: argparse.Namespace, cancel: threading.Event, folder: Path) -> int:
    from appliance.jobs.shelfrestore import (  # Clonezilla's formats load only when used
        check_streams,
        plan_shelf_restore,
        shelf_plan_json,
        shelf_restore,
        shelf_restore_steps,
        shelf_restore_text,
    )

    plan = plan_shelf_restore(folder, args.target, grow=args.grow)
    try:
        text = shelf_restore_text(plan)
        if previewed_or_confirmed(
            args,
            text,
            plan.target,
            "Restoring",
            lambda: {**shelf_plan_json(plan), "steps": steps_json(shelf_restore_steps(plan))},
        ):
            return 0
        progress = make_progress(args.progress)
        if args.verify_first:
            check_streams(plan, progress=progress, cancel=cancel)
        started = time.monotonic()
        warnings = shelf_restore(plan, progress=progress, cancel=cancel)
        seconds = time.monotonic() - started
    finally:
        plan.close()
    if args.json:
        print_json({**shelf_plan_json(plan), "seconds": round(seconds, 3), "warnings": warnings})
    else:
        print(
            f"Restored Clonezilla image {plan.image.name} onto {plan.target.node}: "
            f"{rate(plan.total, seconds)}; every partclone checksum was checked."
        )
        print_warnings(warnings)
    return WARNINGS_EXIT if warnings else 0


def run_clone(args: argparse.Namespace, cancel: threading.Event) -> int:
    from appliance.jobs.clone import clone, clone_steps, plan_clone

    progress = make_progress(args.progress)
    plan = plan_clone(args.source, args.target, grow=args.grow, progress=progress)
    text = clone_text(plan)
    if previewed_or_confirmed(
        args,
        text,
        plan.target,
        "Cloning",
        lambda: {**plan.to_json(), "steps": steps_json(clone_steps(plan))},
    ):
        return 0
    started = time.monotonic()
    warnings = clone(plan, progress=progress, cancel=cancel)
    seconds = time.monotonic() - started
    if args.json:
        print_json(
            {
                **plan.to_json(),
                "seconds": round(seconds, 3),
                "warnings": warnings,
                "read_errors": [list(r) for r in plan.unreadable],
            }
        )
    else:
        print(f"Cloned {plan.source.node} onto {plan.target.node}: {rate(plan.total, seconds)}.")
        print_warnings(warnings)
    return WARNINGS_EXIT if warnings else 0


def run_verify(args: argparse.Namespace, cancel: threading.Event) -> int:
    progress = make_progress(args.progress)
    started = time.monotonic()
    folder = Path(args.repo) / args.image
    if is_clonezilla(folder):
        return run_shelf_verify(args, cancel, folder)
    if args.against:
        result = verify_against(
            args.repo, args.image, args.against, progress=progress, cancel=cancel
        )
        what = f"{args.against} holds the same data as image {args.image}"
        if result.skipped:
            what += " in every part that was compared; not everything was"
    else:
        result = verify_image(args.repo, args.image, progress=progress, cancel=cancel)
        what = f"Image {args.image} is intact: {result.chunks} chunks checked"
    seconds = time.monotonic() - started
    if args.json:
        print_json(
            {
                "command": "verify",
                "image": args.image,
                "against": args.against,
                "ok": True,
                "chunks": result.chunks,
                "bytes": result.bytes_checked,
                "skipped": result.skipped,
                "seconds": round(seconds, 3),
                "compared_all": not result.skipped,
                "checks": [check.to_json() for check in result.checks],
            }
        )
    else:
        print(fit80(f"{what} ({rate(result.bytes_checked, seconds)})."))
        for check in result.checks:  # verify --against: how each region was compared
            print(fit80(f"  {check.line()}."))
    return 0


def run_shelf_verify(args: argparse.Namespace, cancel: threading.Event, folder: Path) -> int:
    """verify of a Clonezilla image folder: one line per partition, then the image's."""
    from appliance.jobs.shelfverify import verify_clonezilla

    if args.against:
        raise UsageError(
            f"{args.image} is a Clonezilla image: verify --against compares a disk with "
            "this appliance's own images only."
        )
    progress = make_progress(args.progress)
    started = time.monotonic()
    result = verify_clonezilla(folder, args.image, progress=progress, cancel=cancel)
    seconds = time.monotonic() - started
    error = result.error()
    if args.json:
        print_json(
            {
                "command": "verify",
                "image": args.image,
                "format": "clonezilla",
                "ok": error is None,
                "bytes": result.bytes_checked,
                "seconds": round(seconds, 3),
                "partitions": [verdict.to_json() for verdict in result.parts],
            }
        )
    else:
        for verdict in result.parts:
            print(fit80(f"  {verdict.line}."))
    if error is not None:
        raise error
    if not args.json:
        count = len(result.parts)
        print(
            fit80(
                f"Clonezilla image {args.image} is intact: {count} partition"
                f"{'s' if count != 1 else ''} checked ({rate(result.bytes_checked, seconds)})."
            )
        )
    return 0

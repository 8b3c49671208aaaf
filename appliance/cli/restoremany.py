"""`appliance restore --repo R --image I TARGET TARGET ...`: one image onto several disks at
once (appliance.jobs.multirestore), confirmed and reported the way `write` does it: one typed
confirmation naming every disk, one verdict line per disk, exit 0 only when all are good."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from appliance.cli.output import fit80, make_progress, print_json
from appliance.errors import DeviceError, SafetyRefusal, UsageError
from appliance.jobs.multirestore import RestoreVerdict, plan_restores, restore_many
from appliance.jobs.plantext import image_source, restore_layout, target_now
from appliance.jobs.restore import RestorePlan, restore_steps
from appliance.jobs.writeplan import describe_steps, steps_json
from appliance.repo.image import authenticity_note
from appliance.shelf.clonezilla import find_folder
from appliance.units import rate


def describe(plans: list[RestorePlan]) -> str:
    """The plan as the confirmation and --dry-run print it: the image once, every target."""
    manifest = plans[0].image.manifest
    lines = [f"{image_source(manifest)[0].upper()}{image_source(manifest)[1:]}."]
    lines.append(
        f"It is read once and every chunk checked once, for all {len(plans)} targets at once."
    )
    for plan in plans:
        lines += [f"Target {plan.target.describe()}", "will be ERASED. It now holds:"]
        lines += [f"  {line}" for line in target_now(plan.target)]
        lines += ["It will hold:", *(f"  {line}" for line in restore_layout(plan))]
    return fit80("\n".join(lines))


def steps_text(plans: list[RestorePlan]) -> list[str]:
    """The steps once when every target has the same, else per target."""
    each = [describe_steps(restore_steps(plan)) for plan in plans]
    if all(steps == each[0] for steps in each):
        return ["Steps on every target:", *each[0]]
    out: list[str] = []
    for plan, steps in zip(plans, each, strict=True):
        out += [f"Steps on {plan.target.node}:", *steps]
    return out


def plan_json(plans: list[RestorePlan]) -> dict[str, Any]:
    manifest = plans[0].image.manifest
    return {
        "command": "restore",
        "image": manifest.name,
        "image_disk_size": manifest.disk.size,
        "targets": [
            {
                "target": plan.target.node,
                "target_size": plan.target.size,
                "same_size": plan.same_size,
                "bytes": plan.total,
                "fit": plan.fit.to_json(),
            }
            for plan in plans
        ],
    }


def confirm(plans: list[RestorePlan]) -> None:
    names = " ".join(plan.target.name for plan in plans)
    image = plans[0].image.manifest.name
    if not sys.stdin.isatty():
        raise SafetyRefusal(
            f"Restoring {image} erases {names}; add --yes to confirm "
            "(there is no terminal to ask on)."
        )
    print(describe(plans), file=sys.stderr)
    answer = " ".join(input(f"Type {names} to erase them, anything else to stop: ").split())
    if answer != names:
        raise SafetyRefusal(f"Nothing was written: you typed {answer!r}, not {names}.")


def failure(verdicts: list[RestoreVerdict], as_json: bool = False) -> DeviceError | None:
    """The one sentence (exit 4, as `write`'s) for targets that failed; None when all are good."""
    failed = [v for v in verdicts if not v.ok]
    if not failed:
        return None
    nodes = ", ".join(v.target.node for v in failed)
    where = (
        "the result's verdicts" if as_json else "its line" if len(failed) == 1 else "their lines"
    )
    return DeviceError(
        f"Restoring failed on {nodes} (see {where}{'' if as_json else ' above'}); "
        f"{len(verdicts) - len(failed)} of {len(verdicts)} targets hold the image."
    )


def _json_line(verdict: RestoreVerdict) -> None:
    """--progress=json: a line per target as soon as its verdict is known."""
    sys.stdout.write(json.dumps({"type": "target", **verdict.to_json()}) + "\n")
    sys.stdout.flush()


def run_restore_many(args: argparse.Namespace, cancel: threading.Event) -> int:
    if find_folder(args.repo, args.image) is not None:
        raise UsageError(
            f"{args.image} is a Clonezilla image: it is restored onto one disk at a time; "
            "name one target."
        )
    plans = plan_restores(args.repo, args.image, list(args.target), grow=args.grow)
    if args.dry_run:
        if args.json:
            data = plan_json(plans)
            for entry, plan in zip(data["targets"], plans, strict=True):
                entry["steps"] = steps_json(restore_steps(plan))
            print_json(data)
        else:
            print("\n".join([describe(plans), *steps_text(plans)]))
        return 0
    if not args.yes:
        confirm(plans)
    progress = make_progress(args.progress)
    started = time.monotonic()
    result = restore_many(
        plans,
        progress=progress,
        cancel=cancel,
        verify_first=args.verify_first,
        report=_json_line if args.progress == "json" else None,
    )
    seconds = time.monotonic() - started
    verdicts = result.verdicts
    good = sum(v.ok for v in verdicts)
    if args.json:
        print_json(
            {
                **plan_json(plans),
                "seconds": round(seconds, 3),
                "ok": good == len(verdicts),
                "verdicts": [v.to_json() for v in verdicts],
                "authenticated": authenticity_note(plans[0].image) is None,
            }
        )
    else:
        print(
            fit80(
                f"Restored image {args.image} onto {good} of {len(verdicts)} disks: "
                f"{rate(max(p.total for p in plans), seconds)}; every chunk was read and "
                "checked once."
            )
        )
        for verdict in verdicts:
            print(fit80(verdict.line().rstrip(".") + "."))
    if result.stop is not None:
        raise result.stop
    error = failure(verdicts, args.json)
    if error is not None:
        raise error  # one sentence on stderr, as every failed job
    note = authenticity_note(plans[0].image)
    if note is not None and not args.json:
        print(f"note: {note}.", file=sys.stderr)
    return 0

"""`appliance write FILE TARGET [TARGET ...]`: a raw image file onto one or more disks."""

from __future__ import annotations

import argparse
import sys
import threading
import time

from appliance.cli.output import fit80, make_progress, print_json
from appliance.errors import DeviceError, SafetyRefusal, VerifyMismatch
from appliance.jobs.imagefit import WriteFilePlan, plan_write
from appliance.jobs.plantext import target_now
from appliance.jobs.writefile import Verdict, write_file, write_steps
from appliance.jobs.writeplan import describe_steps, steps_json
from appliance.units import rate


def describe(plan: WriteFilePlan) -> str:
    """The plan as the confirmation and --dry-run print it."""
    lines = [f"{plan.lines()[0]}."]
    for target in plan.targets:
        lines += [f"Target {target.disk.describe()}", "will be ERASED. It now holds:"]
        lines += [f"  {line}" for line in target_now(target.disk)]
        if target.short:
            lines.append(f"It gets the image's first {target.length} bytes: {target.short}.")
    return fit80("\n".join(lines))


def confirm(plan: WriteFilePlan) -> None:
    names = " ".join(t.disk.name for t in plan.targets)
    if not sys.stdin.isatty():
        raise SafetyRefusal(
            f"Writing {plan.image.name} erases {names}; add --yes to confirm "
            "(there is no terminal to ask on)."
        )
    print(describe(plan), file=sys.stderr)
    answer = " ".join(input(f"Type {names} to erase them, anything else to stop: ").split())
    if answer != names:
        raise SafetyRefusal(f"Nothing was written: you typed {answer!r}, not {names}.")


def failure(verdicts: list[Verdict], as_json: bool = False) -> Exception | None:
    """The one sentence (and exit code) for targets that failed; None when all are good."""
    failed = [v for v in verdicts if not v.ok]
    if not failed:
        return None
    nodes = ", ".join(v.target.disk.node for v in failed)
    good = len(verdicts) - len(failed)
    where = (
        "the result's verdicts" if as_json else "its line" if len(failed) == 1 else "their lines"
    )
    sentence = (
        f"Writing failed on {nodes} (see {where}{'' if as_json else ' above'}); "
        f"{good} of {len(verdicts)} targets hold the image, verified."
    )
    if all(v.error and "differs from the image" in v.error for v in failed):
        return VerifyMismatch(sentence)
    return DeviceError(sentence)


def run_write(args: argparse.Namespace, cancel: threading.Event) -> int:
    progress = make_progress(args.progress)
    plan = plan_write(args.file, args.targets, progress=progress)
    if args.dry_run:
        if args.json:
            print_json({**plan.to_json(), "steps": steps_json(write_steps(plan))})
        else:
            print("\n".join([describe(plan), "Steps on every target:"]))
            print("\n".join(describe_steps(write_steps(plan))))
        return 0
    if not args.yes:
        confirm(plan)
    started = time.monotonic()
    verdicts = write_file(plan, progress=progress, cancel=cancel)
    seconds = time.monotonic() - started
    if args.json:
        print_json(
            {
                **plan.to_json(),
                "seconds": round(seconds, 3),
                "ok": all(v.ok for v in verdicts),
                "verdicts": [v.to_json() for v in verdicts],
            }
        )
    else:
        print(f"Wrote {plan.image.name} onto {len(verdicts)} disk(s): {rate(plan.size, seconds)}.")
        for verdict in verdicts:
            print(fit80(verdict.line() + "."))
    error = failure(verdicts, args.json)
    if error is not None:
        raise error
    return 0

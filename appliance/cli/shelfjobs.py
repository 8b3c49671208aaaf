"""restore of a Clonezilla image folder on the command line: the same confirmation,
--dry-run and --json as a restore of one of our images."""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from appliance.cli.jobs import confirm, describe_plan
from appliance.cli.output import make_progress, print_json
from appliance.jobs.shelfrestore import (
    check_streams,
    plan_shelf_restore,
    shelf_plan_json,
    shelf_restore,
    shelf_restore_steps,
    shelf_restore_text,
)
from appliance.jobs.writeplan import steps_json
from appliance.units import rate


def run_shelf_restore(args: argparse.Namespace, cancel: threading.Event, folder: Path) -> int:
    plan = plan_shelf_restore(folder, args.target, grow=args.grow)
    try:
        text = shelf_restore_text(plan)
        if args.dry_run:
            if args.json:
                print_json(
                    {**shelf_plan_json(plan), "steps": steps_json(shelf_restore_steps(plan))}
                )
            else:
                print("\n".join([describe_plan(text), "Steps:", *text.steps]))
            return 0
        if not args.yes:
            confirm(plan.target, describe_plan(text), "Restoring")
        progress = make_progress(args.progress)
        if args.verify_first:
            check_streams(plan, progress=progress, cancel=cancel)
        started = time.monotonic()
        shelf_restore(plan, progress=progress, cancel=cancel)
        seconds = time.monotonic() - started
    finally:
        plan.close()
    if args.json:
        print_json({**shelf_plan_json(plan), "seconds": round(seconds, 3)})
    else:
        print(
            f"Restored Clonezilla image {plan.image.name} onto {plan.target.node}: "
            f"{rate(plan.total, seconds)}; every partclone checksum was checked."
        )
    return 0

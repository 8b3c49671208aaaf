"""Disk files on the command line: `export` (an image to a file) and `save --to FILE`."""

from __future__ import annotations

import argparse
import threading

from appliance.cli.jobs import print_warnings
from appliance.cli.output import fit80, make_progress, print_json
from appliance.errors import WARNINGS_EXIT, UsageError
from appliance.jobs.export import export, plan_export
from appliance.jobs.savefile import save_file
from appliance.units import human_size, rate

REPO_ONLY = ("resume", "create", "no_check")  # save options that only a repository takes


def save_to_file(args: argparse.Namespace) -> bool:
    """Whether `save` writes a file (--to) or an image of a repository; a sentence when the
    command line mixes the two or names neither."""
    if args.to is None:
        if args.repo is None or args.image is None:
            raise UsageError(
                "save: --repo DIR and --image NAME are required, or --to FILE "
                "(see `appliance save --help`)."
            )
        if args.force:
            raise UsageError("--force goes with --to FILE (see `appliance save --help`).")
        return False
    if args.repo is not None or args.image is not None:
        raise UsageError(
            "save writes an image into a repository (--repo, --image) or a file (--to), not both."
        )
    given = [f"--{name.replace('_', '-')}" for name in REPO_ONLY if getattr(args, name)]
    if given:
        raise UsageError(f"{given[0]} goes with --repo, not with --to FILE.")
    return True


def run_save_file(args: argparse.Namespace, cancel: threading.Event) -> int:
    progress = make_progress(args.progress)
    result = save_file(
        args.source,
        args.to,
        force=args.force,
        allow_ram=args.allow_ram,
        level=args.level,
        progress=progress,
        cancel=cancel,
    )
    warnings = []
    if result.unreadable:
        lost = sum(length for _, length in result.unreadable)
        warnings.append(f"{human_size(lost)} could not be read and were written as zeros")
    if args.json:
        print_json({**result.to_json(), "warnings": warnings})
    else:
        print(
            fit80(
                f"Saved {result.disk.describe()} to {result.dest.path} "
                f"({result.dest.what}): {rate(result.data_bytes, result.seconds)}."
            )
        )
    print_warnings(warnings)
    return WARNINGS_EXIT if warnings else 0


def run_export(args: argparse.Namespace, cancel: threading.Event) -> int:
    plan = plan_export(args.repo, args.image, args.file, force=args.force, allow_ram=args.allow_ram)
    progress = make_progress(args.progress)
    seconds = export(plan, progress=progress, cancel=cancel, level=args.level)
    if args.json:
        print_json({**plan.to_json(), "seconds": round(seconds, 3)})
    else:
        print(
            fit80(
                f"Exported image {plan.image.manifest.name} to {plan.dest.path} "
                f"({plan.dest.what}): {rate(plan.data_bytes, seconds)}; "
                "every chunk was checked."
            )
        )
    return 0

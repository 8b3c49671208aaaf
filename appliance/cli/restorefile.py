"""`appliance restore` of a disk held in a file, with the fit rules of a clone:

    appliance restore --repo DIR --image NAME [--disk N] TARGET   a Windows system image
    appliance restore --file FILE TARGET                          a VM disk file or raw .img

NAME is what `images` lists ("PC-LAB-07 2026-11-30 10:15:00", or the computer's name when it
has one backup there); a backup of several disks takes --disk N (or "NAME disk N"). The
confirmation, --dry-run, --json, --grow and --verify-first are restore's own.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.cli import jobs
from appliance.cli.jobs import previewed_or_confirmed
from appliance.cli.output import fit80, make_progress, print_json
from appliance.errors import UsageError
from appliance.jobs.writeplan import steps_json
from appliance.shelf.clonezilla import find_folder
from appliance.units import rate

if TYPE_CHECKING:  # the file and Windows image readers load only for such a restore
    from appliance.jobs.filerestore import FileRestorePlan


def check_args(args: argparse.Namespace) -> None:
    """restore names an image (--repo and --image) or a file (--file), not both."""
    if args.file is not None:
        if args.repo is not None or args.image is not None:
            raise UsageError(
                "Name either an image (--repo DIR --image NAME) or a file (--file FILE) "
                "to restore, not both."
            )
        if args.disk is not None:
            raise UsageError("--disk names a disk of a Windows system image, not of --file.")
        return
    if args.repo is None or args.image is None:
        raise UsageError(
            "Name the image to restore with --repo DIR --image NAME, or a disk file with "
            "--file FILE (see `appliance restore --help`)."
        )


def is_ours(repo: str, image: str) -> bool:
    """Whether `repo` is a folder of our repository holding the image `image`."""
    root = Path(repo)
    return (root / "repo.json").is_file() and (root / "images" / image).is_dir()


def plan_for(args: argparse.Namespace) -> FileRestorePlan | None:
    """The plan when restore names a file or a Windows system image; None otherwise."""
    if args.file is None and (
        is_ours(args.repo, args.image) or find_folder(args.repo, args.image) is not None
    ):
        return None  # an image of ours, a Clonezilla image folder
    # the disk-file and Windows-backup readers load only for them (16 ms of a restore)
    from appliance.jobs.filerestore import (
        find_windows_backup,
        plan_backup_restore,
        plan_file_restore,
    )

    if args.file is not None:
        return plan_file_restore(args.file, args.target, grow=args.grow)
    found = find_windows_backup(args.repo, args.image)
    if found is None:
        if args.disk is not None:
            raise UsageError(
                f"--disk names a disk of a Windows system image, and {args.image} is not one."
            )
        return None
    backup, named = found
    if named is not None and args.disk is not None and named != args.disk:
        raise UsageError(f"{args.image} names disk {named}, and --disk names {args.disk}.")
    return plan_backup_restore(
        args.repo, backup, args.target, disk=args.disk or named, grow=args.grow
    )


def run_restore(args: argparse.Namespace, cancel: threading.Event) -> int:
    """`restore`: of a file or a Windows system image here, of any other image by jobs."""
    check_args(args)
    targets = args.target if isinstance(args.target, list) else [args.target]
    if len(targets) > 1:
        from appliance.jobs.filerestore import find_windows_backup

        if args.file is not None or (
            not is_ours(args.repo, args.image)
            and find_folder(args.repo, args.image) is None
            and find_windows_backup(args.repo, args.image) is not None
        ):
            raise UsageError(
                f"{args.file or args.image} is restored onto one disk at a time; name one "
                "target (several targets take an image of a repository)."
            )
        return jobs.run_restore(args, cancel)
    args.target = targets[0]
    plan = plan_for(args)
    if plan is None:
        return jobs.run_restore(args, cancel)
    return run_file_restore(args, cancel, plan)


def run_file_restore(
    args: argparse.Namespace, cancel: threading.Event, plan: FileRestorePlan
) -> int:
    from appliance.jobs.filerestore import file_restore_steps, file_restore_text, restore_file

    text = file_restore_text(plan)
    if previewed_or_confirmed(
        args,
        text,
        plan.target,
        "Restoring",
        lambda: {**plan.to_json(), "steps": steps_json(file_restore_steps(plan))},
    ):
        return 0
    progress = make_progress(args.progress)
    started = time.monotonic()
    restore_file(plan, progress=progress, cancel=cancel, verify_first=args.verify_first)
    seconds = time.monotonic() - started
    if args.json:
        print_json({**plan.to_json(), "seconds": round(seconds, 3)})
    else:
        print(fit80(f"Restored {plan.title} onto {plan.target.node}: {rate(plan.total, seconds)}."))
    return 0

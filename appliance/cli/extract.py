"""`appliance extract`: copy files and folders out of an image, without mounting anything.

    appliance extract --repo R --image I --partition N PATH... --to DIR
    appliance extract --file F --partition N PATH... --to DIR

Exit 0 when everything chosen was copied; WARNINGS_EXIT (20) when something was skipped (a
device, a fifo, a link the destination cannot hold) or failed (a file that cannot be read);
the report lists each. A full destination stops with its sentence (exit 4).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.cli import netrepo
from appliance.cli.output import fit80, make_progress, print_json
from appliance.errors import WARNINGS_EXIT

if TYPE_CHECKING:
    from appliance.jobs.copyout import CopyReport


def add_parser(sub: Any) -> None:  # argparse._SubParsersAction of main.Parser
    p = sub.add_parser(
        "extract",
        help="copy files and folders out of an image into a folder (nothing is replaced)",
    )
    p.add_argument("--repo", help="the repository")
    netrepo.add_options(p)
    p.add_argument("--image", help="the image's name, as `images` lists it")
    p.add_argument(
        "--file", metavar="FILE", help="a disk image file (.img, VM disk) instead of an image"
    )
    p.add_argument(
        "--partition", type=int, required=True, metavar="N", help="the partition's number"
    )
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="files or folders inside the partition (/home)"
    )
    p.add_argument("--to", required=True, metavar="DIR", help="the folder to copy into")
    p.add_argument(
        "--allow-ram",
        action="store_true",
        help="allow a folder in memory (tmpfs), lost at power off",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--progress",
        choices=["auto", "json", "none"],
        default="auto",
        help="progress on the terminal (auto), as JSON lines on stdout, or none",
    )


def run_extract(args: argparse.Namespace, cancel: threading.Event) -> int:
    from appliance.jobs.copyout import CopyStopped, DestinationFull
    from appliance.jobs.extract import ImageWhere, extract

    where = ImageWhere(args.repo, args.image, args.file)
    progress = make_progress(args.progress)
    try:
        report = extract(
            where,
            args.partition,
            list(args.paths),
            Path(args.to),
            progress=progress,
            cancel=cancel,
            allow_ram=args.allow_ram,
        )
    except (DestinationFull, CopyStopped) as stop:
        show(stop.report, args.json, stopped=str(stop))  # what was copied stays: say what
        raise
    show(report, args.json)
    return 0 if report.complete else WARNINGS_EXIT


def show(report: CopyReport, as_json: bool, stopped: str | None = None) -> None:
    """The report: the first line on stdout, every rename, skip and failure after it (skips
    and failures as warnings on stderr, whole: they name the files)."""
    if as_json:
        print_json({"command": "extract", "ok": report.complete and stopped is None,
                    "stopped": stopped, **report.to_json()})  # fmt: skip
        return
    lines = report.lines()
    print(fit80(lines[0]))
    for line in lines[1:]:
        if line.startswith(("Skipped:", "FAILED:")):
            sys.stdout.flush()
            print(fit80(f"warning: {line}"), file=sys.stderr)
        else:
            print(fit80(line))

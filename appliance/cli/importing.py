"""`appliance import`: store images kept elsewhere in a repository, deduplicated."""

from __future__ import annotations

import argparse
import threading
import time

from appliance.cli.jobs import print_warnings
from appliance.cli.output import fit80, make_progress, print_json
from appliance.errors import WARNINGS_EXIT, UsageError
from appliance.jobs.importimage import images_at, import_image, incoming_from
from appliance.jobs.plantext import saved_lines


def run_import(args: argparse.Namespace, cancel: threading.Event) -> int:
    names = [args.image] if args.image else images_at(args.source)
    if args.name and len(names) != 1:
        raise UsageError("--as names one image: add --image to say which one.")
    if not names:
        raise UsageError(f"{args.source} holds no complete image to import.")
    # every image opened (and so checked: unsupported parts, headers) before one is stored
    incomings = []
    try:
        for name in names:
            incomings.append(incoming_from(args.source, name))
    except BaseException:
        for incoming in incomings:
            if incoming.close is not None:
                incoming.close()
        raise
    results = []
    warnings: list[str] = []
    for name, incoming in zip(names, incomings, strict=True):
        started = time.monotonic()
        manifest = import_image(
            args.repo,
            args.name or name,
            incoming,
            create=args.create,
            progress=make_progress(args.progress),
            cancel=cancel,
        )
        seconds = time.monotonic() - started
        stats = manifest.figures
        results.append(
            {"image": manifest.name, "from": incoming.origin, "seconds": round(seconds, 3)}
            | stats.to_dict()
        )
        results[-1]["warnings"] = list(stats.warnings)
        warnings += stats.warnings
        if not args.json:
            print(fit80("\n".join(saved_lines(manifest, seconds, incoming.origin, "Imported"))))
    if args.json:
        print_json({"command": "import", "images": results})
    print_warnings(warnings)
    return WARNINGS_EXIT if warnings else 0

"""`appliance import`: store images kept elsewhere in a repository, deduplicated."""

from __future__ import annotations

import argparse
import threading
import time

from appliance.cli.output import fit80, make_progress, print_json
from appliance.errors import UsageError
from appliance.jobs.importimage import images_at, import_image, incoming_from
from appliance.jobs.plantext import saved_lines


def run_import(args: argparse.Namespace, cancel: threading.Event) -> int:
    names = [args.image] if args.image else images_at(args.source)
    if args.name and len(names) != 1:
        raise UsageError("--as names one image: add --image to say which one.")
    if not names:
        raise UsageError(f"{args.source} holds no complete image to import.")
    results = []
    for name in names:
        incoming = incoming_from(args.source, name)
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
        if not args.json:
            print(fit80("\n".join(saved_lines(manifest, seconds, incoming.origin, "Imported"))))
    if args.json:
        print_json({"command": "import", "images": results})
    return 0

"""`appliance cast send|receive`: one image to a room of PCs at once with udpcast.

    appliance cast send --repo R --image I [--receivers N --wait S] [--interface IF]
                        [--http-port P] [--linger S]
    appliance cast receive TARGET [--interface IF] [--from http://SENDER:P/] [--wait S]

The sender streams the image with udp-sender and serves its repository over HTTP; each
receiver restores what udp-receiver hands it (appliance.jobs.cast, appliance.jobs.castsend).
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

from appliance.cli import netrepo
from appliance.cli.output import fit80, make_progress, print_json
from appliance.errors import SafetyRefusal


def add_parser(sub: Any) -> None:  # argparse._SubParsersAction of main.Parser
    p = sub.add_parser("cast", help="multicast one image to many PCs at once (udpcast)")
    cast = p.add_subparsers(dest="cast", metavar="ACTION", parser_class=type(p))
    cast.required = True

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--interface", metavar="IF", help="the network interface (udpcast: eth0)")
        q.add_argument("--portbase", type=int, default=9000, help=argparse.SUPPRESS)
        q.add_argument("--json", action="store_true", help="print the result as JSON")
        q.add_argument(
            "--progress", choices=["auto", "json", "none"], default="auto", help="progress"
        )

    q = cast.add_parser("send", help="stream an image to the receivers (udp-sender)")
    q.add_argument(
        "--repo",
        required=True,
        help="the repository: a folder, ssh://, smb://, nfs:// (mounted for the job), "
        "s3:// or http(s)://",
    )
    q.add_argument("--image", required=True, help="the image's name, as `images` lists it")
    q.add_argument("--receivers", type=int, default=1, metavar="N", help="start when N came")
    q.add_argument(
        "--wait", type=int, default=600, metavar="S", help="seconds to wait for the receivers"
    )
    q.add_argument(
        "--http-port",
        type=int,
        default=8090,
        metavar="P",
        help="serve the repository over HTTP on this port for the receivers' fallback (0: none)",
    )
    q.add_argument(
        "--linger",
        type=float,
        default=60,
        metavar="S",
        help="keep serving until no request came for S seconds after the stream",
    )
    netrepo.add_options(q)
    common(q)

    q = cast.add_parser("receive", help="restore the image a sender streams (erases TARGET)")
    q.add_argument("target", help="the disk to overwrite")
    q.add_argument(
        "--from",
        dest="fallback",
        metavar="URL",
        help="the sender's repository over HTTP (default: the address the stream names)",
    )
    q.add_argument(
        "--wait", type=int, default=600, metavar="S", help="seconds to wait for a sender"
    )
    q.add_argument("--yes", action="store_true", help="do not ask before erasing the target")
    netrepo.add_passphrase_option(q)  # a v1 repository with a key: its stream is checked
    common(q)


def confirm(target: str) -> None:
    if not sys.stdin.isatty():
        raise SafetyRefusal(
            f"Receiving an image erases {target}; add --yes to confirm "
            "(there is no terminal to ask on)."
        )
    name = target.rpartition("/")[2]
    answer = input(
        f"Whatever image the sender streams will ERASE {target}. "
        f"Type {name} to erase it, anything else to stop: "
    ).strip()
    if answer != name:
        raise SafetyRefusal(f"Nothing was written: you typed {answer!r}, not {name}.")


def say(line: str) -> None:
    """A line for people while the job runs (on stderr: stdout may carry JSON)."""
    print(f"appliance: {line}", file=sys.stderr, flush=True)


def run_cast(args: argparse.Namespace, cancel: threading.Event) -> int:
    progress = make_progress(args.progress)
    if args.cast == "send":
        from appliance.jobs.castsend import send

        sent = send(
            args.repo,
            args.image,
            say=say,
            receivers=max(1, args.receivers),
            wait=max(1, args.wait),
            interface=args.interface,
            http_port=args.http_port,
            portbase=args.portbase,
            linger=args.linger,
            progress=progress,
            cancel=cancel,
        )
        if args.json:
            print_json({"command": "cast send", "ok": True, **sent.to_json()})
        else:
            print(fit80(sent.line()))
        return 0
    from appliance.cli import keys
    from appliance.jobs.cast import receive

    keys.install(args)  # where the passphrase of a stream signed by its key comes from
    if not args.yes:
        confirm(args.target)
    got = receive(
        args.target,
        interface=args.interface,
        fallback_url=args.fallback,
        portbase=args.portbase,
        wait=max(1, args.wait),
        progress=progress,
        cancel=cancel,
        say=say,
    )
    if args.json:
        print_json({"command": "cast receive", **got.to_json()})
    else:
        print(fit80(got.line()))
    return 0

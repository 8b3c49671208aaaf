"""`appliance ...`: the command line. One sentence and a fixed exit code for every failure.

Only this module catches everything: an ApplianceError prints its sentence; anything else is
a bug, logged with its traceback to the log file (appliance.logsetup), and the user gets one
sentence with its path. Engine log records go to that file too, never to the terminal.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from appliance import __version__
from appliance.cli import cast, extract, mounting, netrepo
from appliance.errors import ApplianceError, Cancelled, UsageError
from appliance.logsetup import report_internal_error, setup_logging

CANCEL = threading.Event()
#: a stop signal arrived (Ctrl-C or SIGTERM). Ctrl-C reaches the whole foreground group, so a
#: tool the job runs (qemu-storage-daemon, sfdisk) may die of it and its failure reach the
#: job before the signal does: the answer is still "stopped", not the tool's failure.
STOPPED = threading.Event()


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message[0].upper()}{message[1:]} (see `{self.prog} --help`).")


def workers(text: str) -> int:
    """--workers: 1 to 64 threads."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= 64:
        raise argparse.ArgumentTypeError(f"{text} is not a number of threads from 1 to 64")
    return number


def workers_opt(p: argparse.ArgumentParser, what: str, default: str = "") -> None:
    p.add_argument(
        "--workers",
        type=workers,
        metavar="N",
        help=f"threads that {what} the data (default: one per processor core{default})",
    )


def build_parser() -> Parser:
    parser = Parser(prog="appliance", description="Save, restore, clone and verify whole disks.")
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    def progress_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--progress",
            choices=["auto", "json", "none"],
            default="auto",
            help="progress on the terminal (auto), as JSON lines on stdout (the "
            "result too, as with --json), or none",
        )

    def target_opts(p: argparse.ArgumentParser, several: bool = False) -> None:
        """What every job that overwrites a disk takes (restore: one disk or several)."""
        if several:
            p.add_argument(
                "target",
                nargs="+",
                metavar="TARGET",
                help="the disk to overwrite; several: one image onto all of them at once",
            )
        else:
            p.add_argument("target", help="the disk to overwrite")
        p.add_argument("--yes", action="store_true", help="do not ask before erasing the target")
        p.add_argument("--dry-run", action="store_true", help="show the plan and stop")
        p.add_argument("--json", action="store_true", help="print the plan or result as JSON")
        p.add_argument(
            "--grow",
            type=int,
            metavar="N",
            help="the partition that grows (or shrinks) to fit another disk size",
        )
        progress_opt(p)

    p = sub.add_parser("disks", help="list the disks and their partitions")
    p.add_argument("--json", action="store_true", help="stable JSON output")
    p.add_argument("--all", action="store_true", help="include loop devices")

    p = sub.add_parser("save", help="save a whole disk into an image (or a file: --to)")
    p.add_argument("source", help="the disk to save: sda, /dev/nvme0n1, /dev/disk/by-id/...")
    p.add_argument("--repo", help="the repository folder, or ssh://, smb://, nfs://")
    netrepo.add_options(p)
    p.add_argument("--image", help="the new image's name")
    p.add_argument(
        "--to",
        metavar="FILE",
        help="save to one plain file instead: FILE.img (sparse) or FILE.img.zst",
    )
    p.add_argument("--force", action="store_true", help="with --to: replace an existing file")
    p.add_argument(
        "--level",
        type=int,
        default=3,
        choices=range(1, 20),
        metavar="N",
        help="zstd level 1-19 (default 3)",
    )
    p.add_argument("--resume", action="store_true", help="continue an unfinished image")
    p.add_argument(
        "--create",
        action="store_true",
        help="make the repository if the folder does not hold one yet",
    )
    p.add_argument(
        "--allow-ram",
        action="store_true",
        help="allow a repository in memory (tmpfs), lost at power off",
    )
    p.add_argument(
        "--no-check",
        action="store_true",
        help="do not check each saved filesystem on the image (faster, unproven)",
    )
    workers_opt(p, "hash, compress and store", " and a few more that wait on the repository")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    progress_opt(p)

    p = sub.add_parser(
        "restore",
        help="restore an image, a Windows system image or a disk file onto a disk "
        "(erases the disk)",
    )
    p.add_argument("--repo", help="the repository (or a folder of other tools' images)")
    netrepo.add_options(p)
    p.add_argument("--image", help="the image's name, as `images` lists it")
    p.add_argument(
        "--disk",
        metavar="N",
        help="which disk of a Windows system image of several disks (1, 2, ...)",
    )
    p.add_argument(
        "--file",
        metavar="FILE",
        help="restore the disk in a VM disk file (.qcow2 .vhd .vhdx .vmdk .vdi) or raw .img "
        "instead, with the fit rules (partitions grown or shrunk)",
    )
    p.add_argument(
        "--verify-first",
        action="store_true",
        help="re-hash every chunk of the image before writing anything",
    )
    workers_opt(p, "decode")
    target_opts(p, several=True)

    cast.add_parser(sub)
    extract.add_parser(sub)
    mounting.add_parsers(sub)

    p = sub.add_parser("clone", help="copy a disk onto another disk (erases the target)")
    p.add_argument("source", help="the disk to copy")
    target_opts(p)

    p = sub.add_parser(
        "write", help="write a raw image file (.img .iso .bin, compressed, .zip) onto disks"
    )
    p.add_argument("file", help="the image file: .img .iso .bin, .gz .xz .zst .bz2, or .zip")
    p.add_argument("targets", nargs="+", metavar="TARGET", help="the disks to overwrite")
    p.add_argument("--yes", action="store_true", help="do not ask before erasing the targets")
    p.add_argument("--dry-run", action="store_true", help="show the plan and stop")
    p.add_argument("--json", action="store_true", help="print the plan or result as JSON")
    progress_opt(p)

    p = sub.add_parser("verify", help="check an image, or a disk against an image")
    p.add_argument("--repo", required=True)
    netrepo.add_options(p)
    p.add_argument("--image", required=True)
    p.add_argument("--against", metavar="DISK", help="compare this disk's data with the image")
    p.add_argument("--json", action="store_true")
    progress_opt(p)

    p = sub.add_parser("export", help="write an image as a disk file (.img, .img.zst, VM disk)")
    p.add_argument("--repo", required=True)
    netrepo.add_options(p)
    p.add_argument("--image", required=True)
    p.add_argument("file", help="FILE.img, .img.zst, .qcow2, .vhdx, .vhd, .vmdk or .vdi")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument(
        "--allow-ram", action="store_true", help="allow a file in memory (tmpfs), lost at power off"
    )
    p.add_argument(
        "--level", type=int, default=3, choices=range(1, 20), metavar="N", help="zstd level"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    progress_opt(p)

    p = sub.add_parser("images", help="list the images in a repository")
    p.add_argument("--repo", required=True)
    netrepo.add_options(p)
    p.add_argument("--json", action="store_true")

    sub.add_parser("demo", help="run every job on demo disks (loop devices); touches no real disk")

    p = sub.add_parser("tui", help="the full-screen interface (what the stick starts with)")
    p.add_argument(
        "--demo",
        action="store_true",
        help="make demo disks (loop devices) to try every job; no real disk is touched",
    )

    p = sub.add_parser(
        "unattended",
        help="run the job that the kernel command line asks for "
        "(appliance.job=...; see docs/live-usb.md)",
    )
    p.add_argument(
        "--cmdline", metavar="FILE", help="read the command line from FILE instead of /proc/cmdline"
    )

    p = sub.add_parser("gc", help="remove chunks that no complete image uses")
    p.add_argument("--repo", required=True)
    netrepo.add_options(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("delete", help="delete an image (then gc frees its chunks)")
    p.add_argument("--repo", required=True)
    netrepo.add_options(p)
    p.add_argument("--image", required=True)
    p.add_argument("--yes", action="store_true", help="do not ask before deleting")
    p.add_argument(
        "--gc", action="store_true", help="remove the chunks no other image uses right away"
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "import",
        help=(
            "store images kept elsewhere (another repository, Clonezilla or Rescuezilla "
            "folders) in a repository, deduplicated"
        ),
    )
    p.add_argument("--repo", required=True, help="the repository that receives the images")
    netrepo.add_options(p)
    p.add_argument("--from", dest="source", required=True, metavar="DIR", help="where they are")
    p.add_argument("--image", help="only this image (default: every image found there)")
    p.add_argument("--as", dest="name", metavar="NAME", help="the imported image's new name")
    p.add_argument("--create", action="store_true", help="make the repository if it is not there")
    p.add_argument("--json", action="store_true")
    progress_opt(p)

    p = sub.add_parser("info", help="show an image: its disk, partitions, proofs and log")
    p.add_argument("--repo", required=True)
    netrepo.add_options(p)
    p.add_argument("--image", required=True)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("init", help="make a new, empty repository (--encrypt: format v2)")
    p.add_argument("--repo", required=True, help="an empty folder, or s3://BUCKET/FOLDER")
    p.add_argument(
        "--encrypt",
        action="store_true",
        help="encrypt and authenticate everything in it, with a passphrase asked twice",
    )
    netrepo.add_options(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("key", help="a repository's key: add, change, export, import")
    keys = p.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    keys.required = True
    k = keys.add_parser(
        "add", help="a key that signs an unencrypted repository's images (it stays format v1)"
    )
    k.add_argument("--repo", required=True)
    netrepo.add_options(k)
    k = keys.add_parser("change", help="a new passphrase (no chunk is rewritten)")
    k.add_argument("--repo", required=True)
    netrepo.add_options(k)
    k.add_argument("--new-passphrase-file", type=Path, metavar="FILE")
    k = keys.add_parser("export", help="the key as printable text, to type back")
    k.add_argument("--repo", required=True)
    netrepo.add_options(k)
    k.add_argument("--to", metavar="FILE", help="a new file (default: standard output)")
    k = keys.add_parser("import", help="put back the key file from an exported copy")
    k.add_argument("--repo", required=True)
    netrepo.add_options(k)
    k.add_argument("file", metavar="FILE", help="the exported text (- for standard input)")
    return parser


def _on_signal(signum: int, frame: FrameType | None) -> None:
    STOPPED.set()
    CANCEL.set()


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C: Python's own KeyboardInterrupt, remembered (see `main`)."""
    STOPPED.set()
    raise KeyboardInterrupt


def dispatch(args: argparse.Namespace) -> int:
    if getattr(args, "progress", None) == "json" and hasattr(args, "json"):
        args.json = True  # stdout holds JSON lines only: the result is one too
    # Imported here so that `appliance --help` works even when a dependency is missing.
    if args.command == "disks":
        from appliance.cli import disks

        return disks.run_disks(args.all, args.json, sys.stdout)
    if args.command == "demo":
        from appliance.cli import demo

        return demo.run_demo(CANCEL)
    if args.command == "unattended":
        from appliance.cli import unattended

        return unattended.main(args.cmdline, CANCEL)
    if args.command == "tui":  # its own program: appliance/ never imports textual or tui
        flags = ["--demo"] if args.demo else []
        os.execv(sys.executable, [sys.executable, "-m", "tui", *flags])
    if args.command in ("init", "key"):
        from appliance.cli import keys

        return keys.run_init(args) if args.command == "init" else keys.run_key(args)
    if args.command == "delete":
        from appliance.cli import delete

        return delete.run_delete(args)
    if args.command == "info":
        from appliance.cli import info

        return info.run_info(args)
    if args.command == "write":
        from appliance.cli import write

        return write.run_write(args, CANCEL)
    if args.command == "cast":
        return cast.run_cast(args, CANCEL)
    if args.command == "extract":
        return extract.run_extract(args, CANCEL)
    if args.command in ("mount", "umount", "files"):
        run = {"mount": mounting.run_mount, "umount": mounting.run_umount}
        return run.get(args.command, mounting.run_files)(args)
    if args.command == "import":
        from appliance.cli import importing

        return importing.run_import(args, CANCEL)
    from appliance.cli import jobs

    if args.command in ("save", "export"):
        from appliance.cli import files

        if args.command == "export":
            return files.run_export(args, CANCEL)
        if files.save_to_file(args):
            return files.run_save_file(args, CANCEL)
        return jobs.run_save(args, CANCEL)
    if args.command == "restore":  # a disk file or Windows system image, else by jobs
        from appliance.cli import restorefile

        return restorefile.run_restore(args, CANCEL)
    if args.command == "clone":
        return jobs.run_clone(args, CANCEL)
    if args.command == "verify":
        return jobs.run_verify(args, CANCEL)
    if args.command in ("images", "gc"):
        from appliance.cli import catalog

        return catalog.run_images(args) if args.command == "images" else catalog.run_gc(args)
    raise UsageError(f"Unknown command {args.command}.")


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _on_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when ignored
        signal.signal(signal.SIGINT, _on_interrupt)
    setup_logging("cli")  # engine warnings go to the log file, not as bare lines on stderr
    try:
        args = build_parser().parse_args(argv)
        with netrepo.network_places(args):
            if getattr(args, "repo", None) is not None:
                from appliance.cli import keys

                keys.install(args)  # where an encrypted repository's passphrase comes from
            return dispatch(args)
    except ApplianceError as exc:
        if STOPPED.is_set() and not isinstance(exc, Cancelled):
            logging.getLogger(__name__).info("after a stop signal: %s", exc)
            exc = Cancelled("Stopped by the user.")
        sys.stdout.flush()
        print(
            f"\nappliance: {exc}" if sys.stderr.isatty() else f"appliance: {exc}", file=sys.stderr
        )
        return exc.exit_code
    except KeyboardInterrupt:
        print("appliance: Stopped by the user.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    except Exception as exc:  # the one place that catches everything: log it, print a sentence
        print(f"appliance: {report_internal_error(exc)}", file=sys.stderr)
        return 70


def run() -> NoReturn:
    """The `appliance` command: `main`, then exit with its answer. Python puts a handled
    signal back to its default while it shuts down, so a Stop (SIGTERM) arriving in those
    last milliseconds would kill the finished job by the signal instead of letting it exit
    with its answer; an ignored signal stays ignored."""
    code = main()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    run()

"""`python3 -m tui [--demo]` (what `appliance tui` runs): the full-screen interface.

Exit codes: 0 quit, 80 the user asked to restart the computer, 81 to power it off (the live
system's launcher acts on them), 70 an internal error (the traceback is in the log), and the
engine's codes for a failure before the interface started (e.g. 4 when the demo disks cannot
be made).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence

from appliance.errors import ApplianceError
from appliance.logsetup import report_internal_error, setup_logging


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="appliance tui", description="The appliance's full-screen interface."
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="make demo disks (loop devices) and use them; no real disk is "
        "touched; they are removed on exit",
    )
    parser.add_argument("--repo", metavar="DIR", help="the repository folder to start with")
    parser.add_argument(
        "--ascii",
        action="store_true",
        default=None,
        help="only ASCII characters on screen (automatic on TERM=linux)",
    )
    parser.add_argument(
        "--console",
        action="store_true",
        default=None,
        help="16 ANSI colours (automatic on TERM=linux)",
    )
    parser.add_argument(
        "--all", action="store_true", help="list loop devices too (always with --demo)"
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def session(demo: bool) -> Iterator[tuple[str | None, dict[str, str]]]:
    if not demo:
        yield None, {}
        return
    from tui.demo import demo_session

    print("Making the demo disks (a laptop, a new SSD, a USB stick)...", file=sys.stderr)
    with demo_session() as made:
        yield made.repo, made.labels


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    where = str(setup_logging("tui"))
    try:
        from tui.app import ApplianceApp
        from tui.backend import EngineBackend
        from tui.look import detect

        look = detect(ascii=args.ascii, console=args.console)
        with session(args.demo) as (demo_repo, labels):
            backend = EngineBackend(
                include_loop=args.demo or args.all,
                labels=labels,
                only=set(labels) if args.demo else None,
            )
            app = ApplianceApp(
                backend, look=look, repo=args.repo or demo_repo, demo=args.demo, log_path=where
            )
            app.run()
            code = app.return_code or 0
        if code == 80:
            print("Restart requested.", file=sys.stderr)
        elif code == 81:
            print("Power off requested.", file=sys.stderr)
        return code
    except ApplianceError as exc:
        print(f"appliance: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "textual":
            return internal_error(exc)
        print(
            "appliance: The interface needs the Python package textual (8.2.8); install it, "
            "or use the command line (appliance --help).",
            file=sys.stderr,
        )
        return 3
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the one place that catches everything: log it, print a sentence
        return internal_error(exc)


def internal_error(exc: BaseException) -> int:
    print(f"appliance: {report_internal_error(exc, 'the interface', 'tui')}", file=sys.stderr)
    return 70


if __name__ == "__main__":
    sys.exit(main())

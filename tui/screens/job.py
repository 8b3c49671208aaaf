"""A running job: one bar for the whole job (by bytes), phase, rate, elapsed and time left;
a stop that asks once; at the end a summary and what to do next."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState

from appliance.errors import Cancelled
from appliance.progress import Progress, ProgressEvent, phase_words
from appliance.units import clock, human_size, speed
from tui.jobspec import JobSpec, JobSummary
from tui.messages import (
    EXIT_POWEROFF,
    EXIT_REBOOT,
    JobFinished,
    JobProgress,
    JobStarted,
    PowerRequest,
)
from tui.screens.ask import AskScreen
from tui.session import Session
from tui.widgets.errorline import ErrorLine
from tui.widgets.jobbar import JobBar
from tui.widgets.topbar import TopBar


class JobScreen(Screen[None]):
    DEFAULT_CSS = """
    JobScreen #title { text-style: bold; margin: 1 0; }
    JobScreen #phase { height: 1; }
    JobScreen JobBar { margin: 1 0 0 0; }
    JobScreen #figures { height: 1; color: $text-muted; }
    JobScreen #message { height: auto; color: $text-muted; }
    JobScreen #state { text-style: bold; margin-top: 1; height: auto; }
    JobScreen #state.-ok { color: $success; }
    JobScreen #state.-bad { color: $error; }
    JobScreen #summary { height: auto; }
    JobScreen #next { height: auto; margin-top: 1; text-style: bold; }
    JobScreen VerticalScroll { padding: 0 1; }
    JobScreen.-copy #title { color: $success; }
    JobScreen.-copy TopBar { background: $success-darken-2; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop the job"),
        Binding("escape", "home", "Home", show=False),
        Binding("enter", "home", "Home"),
        Binding("h", "home", "Another job"),
        Binding("v", "verify", "Verify"),
        Binding("b", "reboot", "Restart"),
        Binding("o", "poweroff", "Power off"),
    ]

    def __init__(
        self, session: Session, spec: JobSpec, prepare: Callable[[], object] | None = None
    ) -> None:
        super().__init__()
        self.session = session
        self.spec = spec
        self.prepare = prepare
        self.cancel = threading.Event()
        self.running = True
        self.stopping = False
        self.phases: set[str] = set()  # what ran: it says what a stop leaves behind
        self.summary: JobSummary | None = None
        self.last: ProgressEvent | None = None
        self.started = self.session.clock()
        self.stop_dialog: AskScreen | None = None  # open while the user decides

    def compose(self) -> ComposeResult:
        title = self.spec.kind.capitalize()
        if self.spec.kind == "copy":
            title = "Copy files (nothing on any disk is replaced)"
        yield TopBar(title, self.session)
        with VerticalScroll():
            yield Static(self.spec.title, id="title")
            yield Static("Starting.", id="phase")
            yield JobBar()
            yield Static("", id="figures")
            yield Static("", id="message")
            yield Static("", id="state")
            yield Static("", id="summary")
            yield ErrorLine()
            yield Static("", id="next")
        yield Footer()

    def on_mount(self) -> None:
        self.set_class(self.spec.kind == "copy", "-copy")  # a copy-out: never like a restore
        self.session.job_started()
        self.app.post_message(JobStarted())
        self.run_worker(
            self._run, thread=True, exit_on_error=False, group="job", name=self.spec.kind
        )
        self.set_interval(1.0, self._tick)

    def on_unmount(self) -> None:
        # The app is closing under a running job: the engine stops at its next safe point.
        self.cancel.set()

    # -- the job's thread ------------------------------------------------------------
    def _run(self) -> JobSummary:
        if self.prepare is not None:
            self.prepare()
        progress = Progress(self._listen, interval=0.25)
        return self.spec.run(progress, self.cancel)

    def _listen(self, event: ProgressEvent) -> None:
        # Called on the engine's threads: post_message is thread-safe and never blocks them.
        self.post_message(JobProgress(event))

    # -- showing it ------------------------------------------------------------------
    def on_job_progress(self, message: JobProgress) -> None:
        ev = message.event
        self.last = ev
        self.phases.add(ev.phase)
        bar = self.query_one(JobBar)
        bar.total = ev.total
        bar.done = ev.done
        if self.running:
            phase = phase_words(ev.phase)
            self.query_one("#phase", Static).update(
                Text.assemble(
                    ("Now: ", "bold"), phase + (" (stopping...)" if self.stopping else "")
                )
            )
            self.query_one("#message", Static).update(ev.message)
        self._figures()

    def _figures(self) -> None:
        ev = self.last
        elapsed = self.session.clock() - self.started
        if ev is None:
            self.query_one("#figures", Static).update(f"elapsed {clock(elapsed)}")
            return
        left = clock(ev.eta) if self.running else "0:00"
        total = human_size(ev.total) if ev.total else "?"
        self.query_one("#figures", Static).update(
            f"{human_size(ev.done)} of {total}   {speed(ev.rate)}   "
            f"elapsed {clock(elapsed if self.running else ev.elapsed)}   left {left}"
        )

    def _tick(self) -> None:
        if self.running:
            self._figures()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "job" or event.state not in (
            WorkerState.SUCCESS,
            WorkerState.ERROR,
        ):
            return
        self.running = False
        if self.stop_dialog is not None and self.stop_dialog in self.app.screen_stack:
            self.stop_dialog.dismiss(False)  # the job ended: nothing is left to stop
        self.stop_dialog = None
        state = self.query_one("#state", Static)
        if event.state == WorkerState.SUCCESS:
            assert isinstance(event.worker.result, JobSummary)
            self.summary = event.worker.result
            self.query_one(JobBar).finished = True
            state.update(f"Done: the {self.spec.kind} finished.")
            state.add_class("-ok")
            lines = [*self.summary.lines, "", self.summary.verified]
            self.query_one("#summary", Static).update("\n".join(lines))
            self.query_one("#phase", Static).update(Text.assemble(("Now: ", "bold"), "finished"))
        else:
            error = event.worker.error
            assert error is not None
            state.add_class("-bad")
            if isinstance(error, Cancelled):
                state.update(f"Stopped: you stopped the {self.spec.kind}.")
            else:
                state.update(f"Failed: the {self.spec.kind} did not finish.")
                self.query_one(ErrorLine).say(self.session.sentence(error))
            self.query_one("#summary", Static).update(
                f"{self.spec.stopped(self.phases)}\nThe log is {self.session.log_path}."
            )
            self.query_one("#phase", Static).update(Text.assemble(("Now: ", "bold"), "stopped"))
        self._figures()
        self.query_one("#message", Static).update("")
        verify = "V verify, " if self.summary and self.summary.follow_up else ""
        self.query_one("#next", Static).update(
            f"What next: H (or Enter) another job, {verify}B restart the computer, O power off."
        )
        self.session.job_finished()
        self.app.post_message(JobFinished())
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.running
        if action == "verify":
            return (
                not self.running and self.summary is not None and self.summary.follow_up is not None
            )
        if action in ("home", "reboot", "poweroff"):
            return not self.running
        return True

    # -- actions -----------------------------------------------------------------------
    def action_stop(self) -> None:
        if not self.running:
            return
        if self.stopping:
            self.notify("Stopping: the job ends at the next safe point.", timeout=3)
            return
        what = self.spec.stopped({"restore", "clone", "table"})
        if self.spec.kind in ("restore", "clone") and self.spec.target is not None:
            what = (
                f"{self.spec.target.describe()} will be left partly written and will not "
                "start until a restore or clone finishes."
            )
        self.stop_dialog = AskScreen(
            f"Stop the {self.spec.kind}?",
            f"Stop the {self.spec.kind} now? {what}",
            yes="Stop it",
            no="Go on",
        )
        self.app.push_screen(self.stop_dialog, self._stop_answer)

    def _stop_answer(self, yes: bool | None) -> None:
        self.stop_dialog = None
        if yes and self.running:
            self.stopping = True
            self.cancel.set()
            self.query_one("#phase", Static).update(
                Text("Stopping at the next safe point...", style="bold")
            )

    def action_home(self) -> None:
        if not self.running:
            self.app.pop_screen()

    def action_verify(self) -> None:
        if self.running or self.summary is None or self.summary.follow_up is None:
            return
        session = self.session
        spec = session.backend.verify_job(self.summary.follow_up)
        self.app.switch_screen(
            JobScreen(session, spec, lambda: session.prepare_repo(writable=False))
        )

    def action_reboot(self) -> None:
        self._ask_power(EXIT_REBOOT, "Restart", "restart the computer")

    def action_poweroff(self) -> None:
        self._ask_power(EXIT_POWEROFF, "Power off", "power the computer off")

    def _ask_power(self, code: int, title: str, what: str) -> None:
        """One question, then the app leaves with `code` (the console script acts on it)."""
        if self.running or isinstance(self.app.screen, AskScreen):
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.app.post_message(PowerRequest(code))

        self.app.push_screen(
            AskScreen(
                f"{title}?",
                f"{title} now: {what}? Remove the "
                "appliance's USB stick first if it should not start "
                "again.",
                yes=title,
                no="Stay",
            ),
            answered,
        )

"""The engine's multicast jobs for the Room screen (tui/screens/room.py): send an image of
the open repository to a room of PCs (`cast send`), or erase a disk of this PC with what a
sender streams (`cast receive`). No textual here; EngineBackend takes these methods in.

A receive is confirmed like a restore: `plan_receive` probes the disk and applies the same
safety guards as a restore before anything is shown (never the boot stick, the disk holding
the repository, a mounted or in-use disk), and the confirmation asks for its name typed.
"""

from __future__ import annotations

import threading
import time

from appliance.disk.probe import probe_disk
from appliance.jobs.plantext import PlanText, target_now
from appliance.plan.safety import check_target
from appliance.progress import Progress
from appliance.units import rate
from tui.jobspec import JobSpec, JobSummary, WritePlan

RECEIVE_SOURCE = "the image a multicast sender streams (cast send on another PC)"
RECEIVE_LAYOUT = (
    "the partitions of the image that is streamed, fitted onto this disk as a restore fits them",
    "a chunk the stream lost or damaged is fetched over HTTP from the sender",
)
RECEIVE_STEPS = (
    "1. wait for a multicast sender (udp-receiver), up to 10 minutes",
    "2. the restore's steps: the disk marked incomplete first, the table made valid last",
)


class RoomJobs:
    """cast send / cast receive as the interface's jobs."""

    def cast_send_job(self, repo: str, image: str, receivers: int, wait: int) -> JobSpec:
        def run(progress: Progress, cancel: threading.Event) -> JobSummary:
            from appliance.jobs.castsend import send

            sent = send(
                repo, image, receivers=receivers, wait=wait, progress=progress, cancel=cancel
            )
            lines = [sent.line()]
            if sent.url:
                lines.append(
                    f"The repository stayed on {sent.url} for what receivers fetched over HTTP."
                )
            return JobSummary(
                tuple(lines),
                "Each receiver re-hashed every chunk it wrote; its own screen says how it ended.",
            )

        return JobSpec(
            "cast",
            f"Send image {image} to {receivers} PC{'s' if receivers != 1 else ''} (multicast)",
            run,
            image=image,
        )

    def plan_receive(self, target: str) -> WritePlan:
        disk = probe_disk(target)
        check_target(disk)  # the restore's guards, before the confirmation is shown
        text = PlanText(
            "receive",
            RECEIVE_SOURCE,
            disk.describe(),
            target_now(disk),
            RECEIVE_LAYOUT,
            RECEIVE_STEPS,
        )
        return WritePlan("receive", disk, text, 0)

    def receive_job(self, plan: WritePlan) -> JobSpec:
        def run(progress: Progress, cancel: threading.Event) -> JobSummary:
            from appliance.jobs.cast import receive

            started = time.monotonic()
            got = receive(plan.target.node, progress=progress, cancel=cancel)
            took = time.monotonic() - started
            return JobSummary(
                (got.line(), f"{rate(progress.done, took)} in all."),
                "Every chunk was checked against its name as it was written.",
            )

        return JobSpec(
            "restore",
            f"Receive a multicast image onto {plan.target.describe()}",
            run,
            target=plan.target,
        )

"""`appliance demo`: a guided run of every job on demo disks; no real disk is touched."""

from __future__ import annotations

import shlex
import sys
import threading

from appliance.cli.output import make_progress
from appliance.errors import SafetyRefusal
from appliance.jobs.catalog import list_images
from appliance.jobs.demodisks import demo_disks
from appliance.jobs.restore import plan_restore, restore
from appliance.jobs.save import save
from appliance.jobs.verify import verify_against, verify_image
from appliance.units import human_size


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run_demo(cancel: threading.Event) -> int:
    with demo_disks() as demo:
        say(
            f"Demo disks: laptop {demo.laptop}, new SSD {demo.ssd}, USB stick {demo.stick} "
            f"(repository {demo.repo})"
        )
        from appliance.cli.disks import run_disks

        run_disks(True, False, sys.stdout)
        say(f"appliance save {demo.laptop} --repo {shlex.quote(str(demo.repo))} --image laptop")
        manifest = save(
            demo.laptop,
            str(demo.repo),
            "laptop",
            progress=make_progress("auto"),
            cancel=cancel,
            create=True,
        )
        print(
            f"saved {human_size(manifest.used_bytes)} of used data; "
            f"{manifest.figures.new_chunks} chunks stored"
        )
        say("appliance images")
        for image in list_images(str(demo.repo)):
            print(
                f"{image.name}: {image.disk.model if image.disk else None}, "
                f"{human_size(image.used_bytes)} "
                f"used, {human_size(image.stored_bytes)} stored, "
                f"{'complete' if image.complete else 'incomplete'}"
            )
        say("appliance verify --image laptop")
        result = verify_image(
            str(demo.repo), "laptop", progress=make_progress("auto"), cancel=cancel
        )
        print(f"{result.chunks} chunks re-hashed: intact")
        say(f"appliance restore --image laptop {demo.ssd} --yes  (onto the larger new SSD)")
        plan = plan_restore(str(demo.repo), "laptop", demo.ssd)
        restore(plan, progress=make_progress("auto"), cancel=cancel)
        say(f"appliance verify --image laptop --against {demo.ssd}")
        verify_against(
            str(demo.repo), "laptop", demo.ssd, progress=make_progress("auto"), cancel=cancel
        )
        print(f"{demo.ssd} holds the same data as the image")
        say(f"appliance restore --image laptop {demo.stick}  (the repository's own disk)")
        try:
            plan_restore(str(demo.repo), "laptop", demo.stick)
        except SafetyRefusal as exc:  # the refusal is the point of this step
            print(f"refused: {exc}")
        say("Cleaning up the demo disks.")
    return 0

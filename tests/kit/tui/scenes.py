"""Every screen in a fixed state over the fake engine: for the snapshot tests and for the
screenshots in docs/ (`cd tests && python3 -m kit.tui.scenes` writes docs/tui-*.png)."""

from __future__ import annotations

import html
import re
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from textual.pilot import Pilot

from kit.tui.fakes import FakeBackend
from tui.app import ApplianceApp
from tui.look import Look
from tui.screens.confirm import ConfirmScreen
from tui.screens.job import JobScreen
from tui.widgets.disktable import DiskTable
from tui.widgets.imagetable import ImageTable

Steps = Callable[[Pilot[int]], Awaitable[None]]


@dataclass(frozen=True)
class Scene:
    name: str
    doc: str  # the caption in docs/tui.md
    steps: Steps
    console: bool = False  # the bare Linux console look (16 colours, ASCII)
    hold_jobs: bool = False  # jobs stay at 42% until the app closes


async def wait(pilot: Pilot[int], check: Callable[[], bool], tries: int = 200) -> None:
    for _ in range(tries):
        if check():
            await pilot.pause()
            return
        await pilot.pause(0.05)
    raise AssertionError("the scene did not settle")


def disks_listed(pilot: Pilot[int]) -> Callable[[], bool]:
    def check() -> bool:
        tables = pilot.app.screen.query(DiskTable)
        return bool(tables) and all(len(t.disks) >= 3 for t in tables)

    return check


async def home(pilot: Pilot[int]) -> None:
    await wait(pilot, disks_listed(pilot))
    app = pilot.app
    assert isinstance(app, ApplianceApp)
    session = app.session
    await wait(pilot, lambda: session.usage_of(session.disks.disks[0]) is not None)


async def repository(pilot: Pilot[int]) -> None:
    await home(pilot)
    await pilot.press("p")
    await wait(pilot, lambda: "/dev/sda3" in _text(pilot))


async def save(pilot: Pilot[int]) -> None:
    await home(pilot)
    await pilot.press("s", "enter")
    await wait(pilot, lambda: getattr(pilot.app.screen, "preflight", None) is not None)


async def restore(pilot: Pilot[int]) -> None:
    await home(pilot)
    await pilot.press("r")
    await wait(
        pilot,
        lambda: (
            bool(pilot.app.screen.query(ImageTable))
            and len(pilot.app.screen.query_one(ImageTable).keys) == 2
        ),
    )
    await wait(pilot, disks_listed(pilot))
    await pilot.press("enter", "down", "down")  # the target's first row chooses no disk


async def confirm(pilot: Pilot[int]) -> None:
    await restore(pilot)
    await pilot.press("enter")
    await wait(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
    await pilot.press("s", "d", "a", "enter", "s", "d")


async def clone(pilot: Pilot[int]) -> None:
    await home(pilot)
    await pilot.press("c")
    await wait(pilot, disks_listed(pilot))
    await pilot.press("enter", "down", "down")


async def verify(pilot: Pilot[int]) -> None:
    await home(pilot)
    await pilot.press("v")
    await wait(
        pilot,
        lambda: (
            bool(pilot.app.screen.query(ImageTable))
            and len(pilot.app.screen.query_one(ImageTable).keys) == 2
        ),
    )
    await wait(pilot, disks_listed(pilot))
    await pilot.press("enter")


async def job_running(pilot: Pilot[int]) -> None:
    await confirm(pilot)
    await pilot.press("b", "enter")
    await wait(
        pilot, lambda: isinstance(pilot.app.screen, JobScreen) and pilot.app.screen.last is not None
    )


async def job_stop(pilot: Pilot[int]) -> None:
    await job_running(pilot)
    await pilot.press("escape")
    await wait(pilot, lambda: not isinstance(pilot.app.screen, JobScreen))


async def job_done(pilot: Pilot[int]) -> None:
    await confirm(pilot)
    await pilot.press("b", "enter")
    await wait(
        pilot, lambda: isinstance(pilot.app.screen, JobScreen) and not pilot.app.screen.running
    )


def _text(pilot: Pilot[int]) -> str:
    return "\n".join(s.text for s in pilot.app.screen._compositor.render_strips())


SCENES = [
    Scene(
        "home",
        "Home: the disks, the partitions of the highlighted one with their used "
        "space, the repository in use, and the jobs.",
        home,
    ),
    Scene(
        "repository",
        "Repository: a mounted folder, or a filesystem on another disk that "
        "the app mounts read-only (read-write only while saving).",
        repository,
    ),
    Scene("save", "Save: the disk, the image's name, and the preflight.", save),
    Scene("restore", "Restore: the image, then the disk to overwrite.", restore),
    Scene(
        "confirm",
        "The confirmation: what will be destroyed, what will be written, and "
        "the disk's name to type.",
        confirm,
    ),
    Scene("clone", "Clone: the disk to copy, then the disk to overwrite.", clone),
    Scene("verify", "Verify: an image alone, or an image against a disk.", verify),
    Scene(
        "job",
        "A job: one bar by bytes, phase, rate, elapsed and time left.",
        job_running,
        hold_jobs=True,
    ),
    Scene(
        "stop",
        "Stopping a job asks once, and says what the disk is left like.",
        job_stop,
        hold_jobs=True,
    ),
    Scene("done", "The end of a job: a summary and what to do next.", job_done),
    Scene(
        "console",
        "Home on a bare Linux console (TERM=linux): 16 colours, ASCII only.",
        home,
        console=True,
    ),
]


def scene_app(scene: Scene) -> ApplianceApp:
    backend = FakeBackend()
    if scene.hold_jobs:
        backend.gate = threading.Event()
    look = Look(ascii=True, console=True) if scene.console else Look(ascii=False, console=False)
    app = ApplianceApp(
        backend,
        look=look,
        repo="/media/images/appliance",
        watch=False,
        log_path="/var/log/appliance.log",
        blink=False,
    )
    app.session.clock = lambda: 0.0  # "elapsed 0:00" on every machine, however loaded
    return app


_SPAN = re.compile(r'x="([\d.]+)" (y="[\d.]+") textLength="([\d.]+)"([^>]*)>((?:&#160;)+)')


def _keep_leading_spaces(svg: str) -> str:
    """rsvg-convert drops the spaces that start a text span (and stretches the rest): move the
    span right by as many cells instead."""

    def shift(match: re.Match[str]) -> str:
        x, y, length, rest, spaces = match.groups()
        cells = spaces.count("&#160;")
        text_end = svg.index("</text>", match.end())
        total = cells + len(html.unescape(svg[match.end() : text_end]))
        cell = float(length) / total if total else 0.0
        return (
            f'x="{float(x) + cells * cell:.1f}" {y} '
            f'textLength="{float(length) - cells * cell:.1f}"{rest}>'
        )

    return _SPAN.sub(shift, svg)


def write_docs(folder: Path, size: tuple[int, int] = (100, 30)) -> list[Path]:
    """Render every scene to folder/tui-NAME.svg and .png (rsvg-convert)."""
    import asyncio
    import subprocess

    written: list[Path] = []
    for scene in SCENES:
        app = scene_app(scene)

        async def shoot(app: ApplianceApp = app, scene: Scene = scene) -> str:
            async with app.run_test(size=size) as pilot:
                await pilot.pause()
                await scene.steps(pilot)
                await pilot.pause(0.3)
                return app.export_screenshot(title=f"appliance - {scene.name}")

        svg = folder / f"tui-{scene.name}.svg"
        svg.write_text(_keep_leading_spaces(asyncio.run(shoot())), encoding="utf-8")
        png = svg.with_suffix(".png")
        subprocess.run(["rsvg-convert", "--zoom", "1", "-o", str(png), str(svg)], check=True)
        svg.unlink()
        written.append(png)
    return written


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3] / "docs"
    out.mkdir(parents=True, exist_ok=True)
    for path in write_docs(out):
        print(path)

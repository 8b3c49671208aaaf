"""`--demo`: the engine's demo disks (a laptop, a new SSD, a USB stick holding the
repository, all sparse files on loop devices), named for people, cleaned up on exit."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from appliance.jobs.demodisks import DemoDisks, demo_disks


@dataclass
class DemoSession:
    repo: str
    labels: dict[str, str] = field(default_factory=dict)
    disks: DemoDisks | None = None


def demo_labels(demo: DemoDisks) -> dict[str, str]:
    """Kernel name -> what the demo calls the disk (loop devices have no model or serial)."""
    return {
        os.path.basename(demo.laptop): "laptop (demo)",
        os.path.basename(demo.ssd): "new SSD (demo)",
        os.path.basename(demo.stick): "USB stick (demo)",
    }


@contextlib.contextmanager
def demo_session() -> Iterator[DemoSession]:
    with demo_disks() as demo:
        yield DemoSession(str(demo.repo), demo_labels(demo), demo)

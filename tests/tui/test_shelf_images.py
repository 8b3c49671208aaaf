"""The Restore screen lists Clonezilla images beside ours: the real engine reads captured
Clonezilla folders (made by Debian's ocs-sr) and the image list shows them as such."""

from __future__ import annotations

import shutil
from pathlib import Path

from kit.tui.fakes import FakeBackend
from kit.tui.pilot import drive, fake_app, screen_text, until
from textual.pilot import Pilot

from appliance.jobs.catalog import ImageSummary
from tui.backend import EngineBackend
from tui.screens.restore import RestoreScreen
from tui.widgets.imagetable import ImageTable, restorable

DATA = Path(__file__).resolve().parent.parent / "unit" / "shelf" / "data" / "clonezilla"


def shelf_of(tmp_path: Path) -> list[ImageSummary]:
    folder = tmp_path / "shelf"
    shutil.copytree(DATA, folder)
    return EngineBackend().images(str(folder))


def test_the_engine_lists_clonezilla_folders_in_a_plain_folder(tmp_path: Path) -> None:
    images = {image.name: image for image in shelf_of(tmp_path)}
    assert set(images) == {"gptimg", "mbrimg", "rawimg"}
    gpt = images["gptimg"]
    assert gpt.kind == "Clonezilla image" and restorable(gpt), gpt
    assert gpt.disk is not None and gpt.disk.size > 0 and gpt.stored_bytes > 0


def test_the_restore_screen_shows_them_beside_ours(tmp_path: Path) -> None:
    backend = FakeBackend()
    ours = list(backend.images_list)
    backend.images_list = ours + shelf_of(tmp_path)

    async def scenario(pilot: Pilot[int]) -> None:
        await pilot.press("r")
        await until(pilot, lambda: isinstance(pilot.app.screen, RestoreScreen))
        await until(pilot, lambda: len(pilot.app.screen.query_one(ImageTable).images) == 5)
        text = screen_text(pilot.app)
        assert "gptimg" in text and "Clonezilla" in text, text
        assert ours[0].name[:20] in text

    drive(fake_app(backend), scenario)

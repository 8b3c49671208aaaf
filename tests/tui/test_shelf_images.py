"""The Restore screen lists Clonezilla images beside ours: the real engine reads captured
Clonezilla folders (made by Debian's ocs-sr) and the image list shows them as such."""

from __future__ import annotations

import shutil
from pathlib import Path

from kit.tui.fakes import FakeBackend
from kit.tui.pilot import drive, fake_app, screen_text, until
from textual.pilot import Pilot

from appliance.errors import RepositoryError
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


def test_a_repository_folder_not_made_yet_says_to_save_first(tmp_path: Path) -> None:
    """The repository chosen on a fresh stick (the demo's too) has no folder until the first
    save: Restore and Browse say so, and what to do, instead of "there is no repository"."""
    folder = tmp_path / "stick" / "images"
    try:
        EngineBackend().images(str(folder))
    except RepositoryError as exc:
        said = str(exc)
    else:
        raise AssertionError("a folder that does not exist listed as a repository")
    assert said == (
        f"No image has been saved in {folder} yet (the folder does not exist): save a disk "
        "there first, or press P on the home screen to choose another repository."
    )

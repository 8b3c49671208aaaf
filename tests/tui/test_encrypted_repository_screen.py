"""The Repository screen and encrypted repositories: choosing one asks its passphrase
(masked) and unlocks it for the app's jobs; a wrong one is a sentence; F6 makes a new one
with the passphrase asked twice and its strength shown. A v1 repository with a key
(`appliance key add`) is asked for the same way (its jobs check each image's signature); a v1
repository without a key asks nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.tui.fakes import FakeBackend
from kit.tui.pilot import drive, fake_app, screen_text, until
from textual.pilot import Pilot

from appliance.repo import keyring
from appliance.repo.newrepo import add_key, initialise
from tui.app import ApplianceApp
from tui.screens.password import PasswordScreen
from tui.screens.repository import RepositoryScreen

CHEAP = {"iterations": 1, "memory_kib": 64, "lanes": 1}


@pytest.fixture(autouse=True)
def fresh_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(keyring.ENV_PASSPHRASE, raising=False)
    keyring.forget_all()
    yield
    keyring.forget_all()
    keyring.set_passphrase_source(None)


async def _choose(app: ApplianceApp, pilot: Pilot[int], path: str) -> None:
    await pilot.press("p")
    await until(pilot, lambda: isinstance(app.screen, RepositoryScreen))
    await pilot.click("#folder")
    await pilot.press("end", "ctrl+u", *path, "enter")


def _repo_id(path: Path) -> str:
    return str(json.loads((path / "repo.json").read_text())["id"])


def test_choosing_an_encrypted_repository_asks_its_passphrase(tmp_path: Path) -> None:
    repo = tmp_path / "sealed"
    initialise(repo, passphrase="right horse", kdf=CHEAP)
    keyring.forget_all()
    app = fake_app(FakeBackend(), repo=None)

    async def scenario(pilot: Pilot[int]) -> None:
        await _choose(app, pilot, str(repo))
        await until(pilot, lambda: isinstance(app.screen, PasswordScreen), what="the prompt")
        await pilot.press(*"wrong horse", "enter")
        await until(pilot, lambda: "passphrase is wrong" in screen_text(app), what="a sentence")
        assert not keyring.is_unlocked(_repo_id(repo))
        await _choose(app, pilot, str(repo))  # chosen again: asked again
        await until(pilot, lambda: isinstance(app.screen, PasswordScreen), what="the prompt")
        await pilot.press(*"right horse", "enter")
        await until(pilot, lambda: "is unlocked" in screen_text(app), what="the note")
        assert keyring.is_unlocked(_repo_id(repo))
        assert "right horse" not in screen_text(app)

    drive(app, scenario)


def test_f6_makes_an_encrypted_repository(tmp_path: Path) -> None:
    repo = tmp_path / "new"
    app = fake_app(FakeBackend(), repo=None)

    async def scenario(pilot: Pilot[int]) -> None:
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, RepositoryScreen))
        await pilot.click("#folder")
        await pilot.press("end", "ctrl+u", *str(repo), "f6")
        await until(pilot, lambda: isinstance(app.screen, PasswordScreen), what="the prompt")
        await pilot.press(*"short", "enter")
        await until(pilot, lambda: "this one is weak" in screen_text(app), what="the hint")
        await pilot.press(*"shorter", "enter")
        await until(pilot, lambda: "differ" in screen_text(app), what="the refusal")
        assert not repo.exists()
        await pilot.press("f6")
        await until(pilot, lambda: isinstance(app.screen, PasswordScreen), what="the prompt")
        await pilot.press(*"four quiet words here", "enter")
        await until(pilot, lambda: "this one is strong" in screen_text(app), what="the hint")
        await pilot.press(*"four quiet words here", "enter")
        await until(
            pilot, lambda: "Made an encrypted repository" in screen_text(app), 30, "the note"
        )
        assert json.loads((repo / "repo.json").read_text())["version"] == 2
        assert app.session.repo.path == str(repo)
        assert keyring.is_unlocked(_repo_id(repo))

    drive(app, scenario)


def test_choosing_a_keyed_v1_repository_asks_its_passphrase(tmp_path: Path) -> None:
    repo = tmp_path / "signed"
    add_key(initialise(repo), "right horse", CHEAP)
    repo_id = _repo_id(repo)
    keyring.forget_all()
    app = fake_app(FakeBackend(), repo=None)

    async def scenario(pilot: Pilot[int]) -> None:
        await _choose(app, pilot, str(repo))
        await until(pilot, lambda: isinstance(app.screen, PasswordScreen), what="the prompt")
        assert "its key signs its images" in screen_text(app)
        await pilot.press(*"wrong horse", "enter")
        await until(pilot, lambda: "passphrase is wrong" in screen_text(app), what="a sentence")
        assert not keyring.is_unlocked(repo_id)
        await _choose(app, pilot, str(repo))  # chosen again: asked again
        await until(pilot, lambda: isinstance(app.screen, PasswordScreen), what="the prompt")
        await pilot.press(*"right horse", "enter")
        await until(pilot, lambda: "is unlocked" in screen_text(app), what="the note")
        assert keyring.is_unlocked(repo_id)
        assert "right horse" not in screen_text(app)

    drive(app, scenario)


def test_a_v1_repository_without_a_key_asks_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "plain"
    initialise(repo)
    app = fake_app(FakeBackend(), repo=None)

    async def scenario(pilot: Pilot[int]) -> None:
        await _choose(app, pilot, str(repo))
        await until(pilot, lambda: app.session.repo.path == str(repo), what="the repository")
        await pilot.pause()
        assert not isinstance(app.screen, PasswordScreen)

    drive(app, scenario)

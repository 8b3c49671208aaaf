"""The Repository screen takes a web server's or a bucket's address: the repository is reached
where it is (a real `python3 -m http.server`, a real moto S3 server), nothing is mounted; a
web server is read-only and a save is refused with its sentence before anything runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.s3server import S3Server, clear_aws_settings, moto_server
from kit.tui.fakes import FakeBackend
from kit.tui.pilot import drive, fake_app, screen_text, until
from kit.webserve import free_port, http_server
from textual.pilot import Pilot

from appliance.repo.repository import Repository
from appliance.repo.store import LocalStore
from tui.app import ApplianceApp
from tui.screens.home import HomeScreen
from tui.screens.job import JobScreen
from tui.screens.repository import RepositoryScreen
from tui.screens.save import SaveScreen


async def _type_address(app: ApplianceApp, pilot: Pilot[int], address: str) -> None:
    await pilot.press("p")
    await until(pilot, lambda: isinstance(app.screen, RepositoryScreen))
    await pilot.click("#folder")
    await pilot.press("end", "ctrl+u", *address, "enter")


@pytest.fixture
def web_repo(tmp_path: Path) -> Iterator[str]:
    Repository.create(LocalStore(tmp_path / "site" / "repo"))
    with http_server(tmp_path / "site", tmp_path) as base:
        yield f"{base}/repo/"


def test_a_web_server_is_used_read_only_and_a_save_is_refused(web_repo: str) -> None:
    backend = FakeBackend()
    app = fake_app(backend, repo=None)

    async def scenario(pilot: Pilot[int]) -> None:
        await _type_address(app, pilot, web_repo)
        await until(pilot, lambda: f"Using {web_repo} (a repository, read-only" in screen_text(app))
        assert app.session.repo.path == web_repo
        assert app.session.repo.free is None and app.session.repo.net is None
        assert backend.mounted == [] and app.session.repo_disks() == set()
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, SaveScreen))
        await pilot.press("enter")
        screen = app.screen
        await until(pilot, lambda: getattr(screen, "preflight", None) is not None)
        await pilot.press("enter")
        await until(pilot, lambda: "which is read-only" in screen_text(app), what="the refusal")
        text = " ".join(screen_text(app).split())
        assert f"The repository at {web_repo} is on a web server, which is read-only" in text
        assert backend.ran == []  # the save never ran
        assert isinstance(app.screen, JobScreen)

    drive(app, scenario)


def test_a_web_server_that_does_not_answer_is_a_sentence(tmp_path: Path) -> None:
    app = fake_app(FakeBackend(), repo=None)
    address = f"http://127.0.0.1:{free_port()}/repo/"

    async def scenario(pilot: Pilot[int]) -> None:
        await _type_address(app, pilot, address)
        await until(
            pilot, lambda: "cannot be reached" in screen_text(app), timeout=30, what="a sentence"
        )
        text = " ".join(screen_text(app).split())
        assert f"The web server at {address.removesuffix('/repo/')} cannot be reached" in text
        assert app.session.repo.path is None

    drive(app, scenario)


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    clear_aws_settings(monkeypatch, tmp_path)
    with moto_server(tmp_path) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)  # as the CLI: the AWS variables
        server.client().create_bucket(Bucket="lab")
        yield server


def test_a_bucket_is_reached_with_the_aws_variables(s3: S3Server) -> None:
    app = fake_app(FakeBackend(), repo=None)

    async def scenario(pilot: Pilot[int]) -> None:
        await _type_address(app, pilot, "s3://lab/images")
        await until(
            pilot,
            lambda: (
                "Using s3://lab/images (no repository yet: a save makes it)" in screen_text(app)
            ),
        )
        assert app.session.repo.path == "s3://lab/images"
        assert app.session.prepare_repo(writable=True) == "s3://lab/images"  # may be written
        await _type_address_again(app, pilot, "s3://no-such-bucket/x")
        await until(pilot, lambda: "no-such-bucket" in screen_text(app), timeout=20)
        assert app.session.repo.path == "s3://lab/images"  # the one in use stays

    drive(app, scenario)


async def _type_address_again(app: ApplianceApp, pilot: Pilot[int], address: str) -> None:
    await pilot.click("#folder")
    await pilot.press("end", "ctrl+u", *address, "enter")

"""The Repository screen takes a file server: an unknown ssh server's fingerprint is asked
about, the password typed masked, and the share stays mounted while it is in use."""

from __future__ import annotations

from kit.tui.fakes import FakeBackend, FakeShare
from kit.tui.pilot import drive, fake_app, screen_text, until
from textual.pilot import Pilot
from textual.widgets import Input

from tui.screens.ask import AskScreen
from tui.screens.password import PasswordScreen
from tui.screens.repository import RepositoryScreen


def test_a_share_asks_trust_then_password() -> None:
    backend = FakeBackend()
    app = fake_app(backend, repo=None)
    address = "ssh://root@nas:2222/srv/images"

    async def scenario(pilot: Pilot[int]) -> None:
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, RepositoryScreen))
        await pilot.click("#folder")
        await pilot.press("end", "ctrl+u", *address, "enter")
        await until(pilot, lambda: isinstance(app.screen, AskScreen))
        assert "SHA256:fake" in screen_text(app) and "nas port 2222" in screen_text(app)
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, PasswordScreen))
        assert app.screen.query_one(Input).password  # typed masked
        await pilot.press(*"pw 1", "enter")
        await until(pilot, lambda: app.session.repo.net is not None)
        assert backend.share_tries == [(None, None), ("SHA256:fake", None), ("SHA256:fake", "pw 1")]
        share = app.session.repo.net
        assert isinstance(share, FakeShare) and app.session.repo.path == "/tmp"
        await until(pilot, lambda: f"Using {address}" in screen_text(app))
        assert "pw 1" not in screen_text(app)
        await pilot.press("f8")
        await until(pilot, lambda: app.session.repo.path is None)
        assert share.closed

    drive(app, scenario)


def test_an_untrusted_server_gets_nothing() -> None:
    backend = FakeBackend()
    app = fake_app(backend, repo=None)

    async def scenario(pilot: Pilot[int]) -> None:
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, RepositoryScreen))
        await pilot.click("#folder")
        await pilot.press("end", "ctrl+u", *"ssh://nas/srv", "enter")
        await until(pilot, lambda: isinstance(app.screen, AskScreen))
        await pilot.press("n")
        await until(pilot, lambda: "Nothing was sent to nas" in screen_text(app))
        assert backend.share_tries == [(None, None)]
        assert app.session.repo.net is None

    drive(app, scenario)

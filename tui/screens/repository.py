"""Repository: a folder that is already mounted, a filesystem on another disk that the app
mounts (read-only to look and to restore or verify, read-write only while saving), or a
file server's share (ssh://, smb://, nfs://) that the app mounts while it is the one in use,
asking for its password (masked) and whether to trust an ssh server met the first time; or a
web server (http://, https://: read-only, a save is refused with its sentence) or a bucket
(s3://, with the AWS variables or ~/.aws settings the command line reads), used where they
are, nothing mounted.

An encrypted repository (format v2), or a v1 repository with a key that signs its images
(`appliance key add`), asks its passphrase (masked) when it is chosen, and stays unlocked
while the app runs; F6 makes a new encrypted repository at the typed place, with
the passphrase asked twice and its strength shown."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, DataTable, Footer, Input, Static
from textual.worker import Worker, WorkerState

from appliance.disk.probe import Scan
from appliance.repo import keyring
from appliance.repo.mount import RepoMount, Volume
from appliance.repo.netaddress import is_network
from appliance.repo.netmount import HeldMount, NetOptions, PasswordNeeded, ask_later
from appliance.repo.newrepo import initialise
from appliance.repo.places import encrypted_at, is_web_address, keyed_at
from appliance.repo.repository import Repository, holds_repository
from appliance.repo.sshhosts import HostKeyUnknown
from appliance.units import human_size
from tui.messages import ShareMounted, VolumeMounted, VolumesListed, WorkerResult
from tui.screens.ask import AskScreen
from tui.screens.flow import FlowScreen
from tui.screens.password import PasswordScreen
from tui.widgets.errorline import ErrorLine
from tui.widgets.topbar import TopBar
from tui.widgets.volumetable import VolumeTable


class AddressOpened(WorkerResult):
    """A web server's or a bucket's repository was reached; `found`: it holds one."""

    def __init__(self, location: str, found: bool) -> None:
        super().__init__()
        self.location = location
        self.found = found


class Unlocked(WorkerResult):
    """An encrypted repository was opened with the typed passphrase (or made with it)."""

    def __init__(self, location: str, made: bool = False) -> None:
        super().__init__()
        self.location = location
        self.made = made


class RepositoryScreen(FlowScreen):
    DEFAULT_CSS = """
    RepositoryScreen Input, RepositoryScreen Input:focus {
        width: 1fr; max-width: 72; border: round $secondary;
    }
    RepositoryScreen #current { height: auto; margin-top: 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f8", "unmount", "Unmount"),
        Binding("f6", "new_encrypted", "New encrypted"),
    ]

    def compose(self) -> ComposeResult:
        yield TopBar("Choose the repository", self.session)
        with VerticalScroll():
            yield Static("", id="current")
            yield Static(
                "A mounted folder, a file server, a web server or a bucket: type it, then Enter",
                classes="step",
            )
            yield Input(
                placeholder="/mnt/images, ssh://user@host/path, smb://host/share, "
                "nfs://host/path, https://host/path, s3://bucket/prefix",
                id="folder",
            )
            yield Static(
                "Or a filesystem on another disk: arrows, then Enter mounts it "
                "read-only and looks for images",
                classes="step",
            )
            yield VolumeTable(id="volumes")
            yield ErrorLine()
            with Horizontal(classes="buttons"):
                yield Button("New encrypted (F6)", id="new_encrypted", compact=True)
                yield Button("Unmount (F8)", id="unmount", compact=True)
                yield Button("Back (Esc)", id="back", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        folder = self.query_one(Input)
        folder.cursor_blink = self.session.blink
        folder.value = self.session.repo.path or ""
        self.session.repo_changed.subscribe(self, lambda _: self._current())
        self._current()
        self.query_one(VolumeTable).focus()

    def _current(self) -> None:
        repo = self.session.repo
        if not repo.path:
            text = "No repository is chosen yet."
        else:
            free = f", {human_size(repo.free)} free" if repo.free is not None else ""
            text = f"In use: {repo.net.location if repo.net else repo.path}{free}"
            if repo.mount is not None and repo.mount.owned:
                text += (
                    f"\nOn {repo.mount.node}, mounted by the appliance at "
                    f"{repo.mount.mountpoint} (read-write only while a save runs)."
                )
        self.query_one("#current", Static).update(text)

    def disks_changed(self, scan: Scan) -> None:
        super().disks_changed(scan)
        self.list_volumes(scan)

    @work(thread=True, exclusive=True, group="volumes", exit_on_error=False)
    def list_volumes(self, scan: Scan) -> VolumesListed:
        return VolumesListed(self.session.backend.volumes(scan.disks))

    @work(thread=True, exclusive=True, group="mount", exit_on_error=False)
    def mount_volume(self, volume: Volume) -> VolumeMounted:
        mount = self.session.backend.mount(volume.node, writable=False)
        return VolumeMounted(mount, mount.default_repository())

    def on_volumes_listed(self, message: VolumesListed) -> None:
        self.query_one(VolumeTable).show(message.volumes)

    def use(self, path: str | None, mount: RepoMount | None, net: HeldMount | None = None) -> None:
        """Make `path` the repository in use (the screens redraw on the session's news)."""
        failed = self.session.set_repo(path, mount, net)
        if failed is not None:
            self.notify(self.session.sentence(failed), severity="error", timeout=10)
        repo_id = keyed_at(path) if path else None
        if path and repo_id and not keyring.is_unlocked(repo_id):
            self.ask_passphrase(path, encrypted=encrypted_at(path) is not None)

    # -- an encrypted repository ---------------------------------------------------------
    def ask_passphrase(self, location: str, *, encrypted: bool = True) -> None:
        def typed(passphrase: str | None) -> None:
            if passphrase:
                self.query_one(ErrorLine).note("Unlocking the repository...")
                self.unlock(location, passphrase)
            else:
                self.say(f"No passphrase was typed; the repository at {location} stays locked.")

        prompt = (
            f"Passphrase of the encrypted repository at {location}"
            if encrypted
            else f"Passphrase of the repository at {location} (its key signs its images)"
        )
        self.app.push_screen(PasswordScreen(prompt), typed)

    @work(thread=True, exclusive=True, group="unlock", exit_on_error=False)
    def unlock(self, location: str, passphrase: str) -> Unlocked:
        keyring.set_passphrase_source(lambda where: passphrase)
        try:
            Repository.open(location)  # unlocks it for every job of this app
        finally:
            keyring.set_passphrase_source(lambda where: None)  # jobs never ask
        return Unlocked(location)

    def on_unlocked(self, message: Unlocked) -> None:
        if message.made:
            self.use(message.location, None)
            self.query_one(ErrorLine).note(
                f"Made an encrypted repository at {message.location}; keep a copy of its key "
                f"(appliance key export --repo {message.location} on the shell)."
            )
            return
        self.query_one(ErrorLine).note(f"The repository at {message.location} is unlocked.")

    def action_new_encrypted(self) -> None:
        location = self.query_one(Input).value.strip()
        if not location or not (location.startswith("/") or location.startswith("s3://")):
            self.say("Type the new repository's folder (a full path) or s3:// address first.")
            return

        def again(first: str, second: str | None) -> None:
            if second is None:
                self.say("No repository was made.")
            elif second != first:
                self.say("The two passphrases differ; no repository was made.")
            else:
                self.query_one(ErrorLine).note(f"Making an encrypted repository at {location}...")
                self.make_encrypted(location, first)

        def typed(first: str | None) -> None:
            if not first:
                self.say("No passphrase was typed; no repository was made.")
                return
            hint = keyring.strength(first)
            prompt = f"The same passphrase again (this one is {hint}"
            if hint == "weak":
                prompt += f": use {keyring.MIN_LENGTH}+ characters, several words"
            self.app.push_screen(PasswordScreen(prompt + ")"), lambda s: again(first, s))

        prompt = f"A passphrase for the new encrypted repository at {location}"
        self.app.push_screen(PasswordScreen(prompt), typed)

    @work(thread=True, exclusive=True, group="unlock", exit_on_error=False)
    def make_encrypted(self, location: str, passphrase: str) -> Unlocked:
        initialise(location, passphrase=passphrase)  # unlocked for this app from now on
        return Unlocked(location, made=True)

    def on_volume_mounted(self, message: VolumeMounted) -> None:
        path = message.path
        self.use(str(path), message.mount)
        found = holds_repository(path)
        self.query_one(Input).value = str(path)
        state = (
            "a repository was found there"
            if found
            else "no repository yet; the first save makes it"
        )
        self.query_one(ErrorLine).note(f"Using {path}: {state}.")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        volume = self.query_one(VolumeTable).current_volume()
        if volume is None:
            return
        self.query_one(ErrorLine).note(f"Mounting {volume.node} read-only...")
        self.mount_volume(volume)

    # -- a file server -------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="share", exit_on_error=False)
    def mount_share(self, location: str, options: NetOptions) -> ShareMounted:
        return ShareMounted(self.session.backend.mount_network(location, options))

    def start_share(self, location: str, options: NetOptions) -> None:
        self.query_one(ErrorLine).note(f"Connecting to {location}...")
        self.net_try = (location, options)
        self.mount_share(location, options)

    def on_share_mounted(self, message: ShareMounted) -> None:
        held = message.held
        self.use(str(held.folder), None, held)
        state = "a repository" if holds_repository(held.folder) else "no repository yet"
        self.query_one(ErrorLine).note(
            f"Using {held.location} ({state}); it stays mounted while it is in use."
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        error = event.worker.error
        if event.state != WorkerState.ERROR or event.worker.group != "share" or error is None:
            super().on_worker_state_changed(event)
            return
        location, options = self.net_try
        if isinstance(error, HostKeyUnknown):
            fingerprint = error.fingerprint

            def trusted(yes: bool | None) -> None:
                if yes:
                    options.accept_host_key = fingerprint
                    self.start_share(location, options)
                else:
                    self.say(f"Nothing was sent to {error.address.where}.")

            question = (
                f"The ssh server {error.address.where} is met for the first time. Its "
                f"{error.keys[0].kind} host key has the fingerprint\n{fingerprint}\n"
                "Trust it only if the server shows the same (ssh-keygen -lf on its host key)."
            )
            self.app.push_screen(
                AskScreen("Unknown server", question, yes="Trust", no="Do not trust"), trusted
            )
        elif isinstance(error, PasswordNeeded):

            def typed(password: str | None) -> None:
                if password is None:
                    self.say("No password was typed; the share is not mounted.")
                else:
                    options.password = password
                    self.start_share(location, options)

            self.app.push_screen(PasswordScreen(error.prompt), typed)
        else:
            self.say(error)

    # -- a web server or a bucket -------------------------------------------------------
    @work(thread=True, exclusive=True, group="address", exit_on_error=False)
    def open_address(self, location: str) -> AddressOpened:
        return AddressOpened(location, self.session.open_address(location))

    def on_address_opened(self, message: AddressOpened) -> None:
        self.use(message.location, None)
        if is_web_address(message.location):
            state = "a repository, read-only: restore and verify, no save"
        else:
            state = "a repository" if message.found else "no repository yet: a save makes it"
        self.query_one(ErrorLine).note(f"Using {message.location} ({state}).")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if is_network(event.value.strip()):
            self.start_share(event.value.strip(), NetOptions(ask=ask_later))
            return
        if "://" in event.value:
            location = event.value.strip()
            self.query_one(ErrorLine).note(f"Connecting to {location}...")
            self.open_address(location)
            return
        path = Path(event.value.strip()).expanduser()
        if not event.value.strip() or not path.is_absolute():
            self.say("Type the folder's full path, starting with /.")
            return
        parent = path if path.exists() else path.parent
        if not parent.is_dir():
            self.say(f"There is no folder {parent}.")
            return
        if path.exists() and not path.is_dir():
            self.say(f"{path} is a file, not a folder.")
            return
        self.use(str(path), None)
        state = "a repository" if holds_repository(path) else "no repository yet"
        self.query_one(ErrorLine).note(f"Using {path} ({state}).")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "unmount":
            self.action_unmount()
        elif event.button.id == "new_encrypted":
            self.action_new_encrypted()
        elif event.button.id == "back":
            self.action_back()

    def action_unmount(self) -> None:
        net = self.session.repo.net
        if net is not None:
            self.use(None, None)
            self.query_one(ErrorLine).note(f"{net.location} is unmounted.")
            return
        mount = self.session.repo.mount
        if mount is None or not mount.owned:
            self.say("The appliance has mounted nothing here; there is nothing to unmount.")
            return
        self.use(None, None)
        self.query_one(ErrorLine).note(f"{mount.node} is unmounted; it can be unplugged.")
        self.list_volumes(self.session.disks)

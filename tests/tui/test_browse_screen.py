"""Browse in the interface: image -> partition (an unmountable one greyed, with its reason)
-> the file tree (search, Space selects) -> Copy to... (the repository's disk not offered)
-> the copy job (real engine on folders) -> the report; every mount undone on the way out."""

from __future__ import annotations

from pathlib import Path

from kit.tui.browsefakes import BrowseBackend, partition_tree
from kit.tui.pilot import drive, fake_app, screen_text, until
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from tui.screens.browse import BrowseScreen
from tui.screens.browsedest import BrowseDestScreen
from tui.screens.browsetree import BrowseTreeScreen
from tui.screens.job import JobScreen
from tui.screens.restore import RestoreScreen
from tui.widgets.filetree import FileTree
from tui.widgets.imagetable import ImageTable
from tui.widgets.volumetable import VolumeTable


def _backend(tmp_path: Path) -> BrowseBackend:
    dest = tmp_path / "dest"
    dest.mkdir(parents=True)
    return BrowseBackend(tree=partition_tree(tmp_path / "part"), dest_root=dest)


async def _to_tree(pilot: Pilot[int], backend: BrowseBackend) -> BrowseTreeScreen:
    await pilot.press("b")
    await until(pilot, lambda: isinstance(pilot.app.screen, BrowseScreen))
    screen = pilot.app.screen
    assert isinstance(screen, BrowseScreen)
    assert "nothing on any disk is replaced" in screen_text(pilot.app)
    await until(pilot, lambda: len(screen.query_one(ImageTable).keys) == 2)
    await pilot.press("enter")
    parts = screen.query_one("#parts", DataTable)
    await until(pilot, lambda: parts.row_count == 3 and parts.has_focus)
    await pilot.press("down", "enter")  # partition 2: no filesystem
    await until(pilot, lambda: "it holds no filesystem" in screen_text(pilot.app))
    assert "Partition 2 cannot be browsed" in screen_text(pilot.app)
    assert backend.opened == []
    await pilot.press("down", "enter")
    await until(pilot, lambda: isinstance(pilot.app.screen, BrowseTreeScreen))
    tree_screen = pilot.app.screen
    assert isinstance(tree_screen, BrowseTreeScreen) and backend.opened == [3]
    tree = tree_screen.query_one(FileTree)
    await until(pilot, lambda: len(tree.root.children) == 3, what="the tree")
    return tree_screen


def _select(tree: FileTree, name: str) -> None:
    node = next(n for n in tree.root.children if n.data is not None and n.data.path.name == name)
    tree.move_cursor(node)


def test_browse_select_copy_and_report(tmp_path: Path) -> None:
    backend = _backend(tmp_path)

    async def scenario(pilot: Pilot[int]) -> None:
        screen = await _to_tree(pilot, backend)
        tree = screen.query_one(FileTree)
        text = screen_text(pilot.app)
        assert "pagefile.sys" in text and "1.0 kB" in text  # sizes and dates on each line
        assert "/ (partition 3)" in text
        # the search narrows the files shown (folders stay: what they hold may match)
        screen.query_one("#search", Input).value = "pipe"
        await until(pilot, lambda: len(tree.root.children) == 2, what="the filter")
        screen.query_one("#search", Input).value = ""
        await until(pilot, lambda: len(tree.root.children) == 3, what="the filter undone")
        tree.focus()
        await pilot.press("c")  # nothing selected yet
        await until(pilot, lambda: "Select files or folders first" in screen_text(pilot.app))
        for name in ("Documents", "pipe"):
            _select(tree, name)
            await pilot.press("space")
        await until(pilot, lambda: "Selected (2): /Documents, /pipe" in screen_text(pilot.app))
        await pilot.press("c")
        await until(pilot, lambda: isinstance(pilot.app.screen, BrowseDestScreen))
        dest_screen = pilot.app.screen
        table = dest_screen.query_one(VolumeTable)
        await until(pilot, lambda: len(table.keys) == 2, what="the destinations")
        assert "/dev/sdc1" not in table.keys  # the repository's disk is never offered
        table.select_key("/dev/sdb1")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, JobScreen))
        await until(pilot, lambda: "Done: the copy finished" in screen_text(pilot.app))
        text = screen_text(pilot.app)
        assert "Copy files (nothing on any disk is replaced)" in text
        assert "Skipped: /pipe: a fifo (named pipe) is not copied." in text
        assert "Copied 2 file(s), 1 folder(s)" in text
        got = tmp_path / "dest/recovered-office-pc-2024-04-02/Documents"
        assert (got / "report.odt").read_bytes() == b"r" * 300_000
        assert backend.mounted == ["/dev/sdb1"] and backend.ran == ["copy"]
        await pilot.press("enter")  # back to the tree: more can be copied
        await until(pilot, lambda: pilot.app.screen is screen)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, BrowseScreen))
        assert backend.dest_unmounted == ["/dev/sdb1"] and backend.closed == [3]

    drive(fake_app(backend), scenario)


def test_quitting_unmounts_and_restore_offers_browse(tmp_path: Path) -> None:
    backend = _backend(tmp_path)

    async def scenario(pilot: Pilot[int]) -> None:
        await _to_tree(pilot, backend)
        assert backend.closed == []
        await pilot.press("ctrl+q")

    drive(fake_app(backend), scenario)
    assert backend.closed == [3]  # the app quit with the partition mounted: it is unmounted

    backend = _backend(tmp_path / "again")

    async def from_restore(pilot: Pilot[int]) -> None:
        await pilot.press("r")
        await until(pilot, lambda: isinstance(pilot.app.screen, RestoreScreen))
        images = pilot.app.screen.query_one(ImageTable)
        await until(pilot, lambda: len(images.keys) == 2)
        await pilot.press("b")  # Browse on the highlighted image row
        await until(pilot, lambda: isinstance(pilot.app.screen, BrowseScreen))
        parts = pilot.app.screen.query_one("#parts", DataTable)
        await until(pilot, lambda: parts.row_count == 3, what="the image's partitions")

    drive(fake_app(backend), from_restore)

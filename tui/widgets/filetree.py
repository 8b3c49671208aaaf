"""The files of a mounted partition as a tree: size and date on each line, Space marks files
and folders to copy, and a name filter (the search box) narrows what folders show."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DirectoryTree
from textual.widgets._directory_tree import DirEntry
from textual.widgets._tree import TreeNode

from appliance.units import human_size


class FileTree(DirectoryTree):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "mark", "Select / unselect"),
    ]

    def __init__(self, path: Path, *, title: str = "/", id: str | None = None) -> None:
        super().__init__(path, id=id)
        self.root_path = path
        self.root_title = title  # the root's label (the mount point's own name says nothing)
        self.marked: set[Path] = set()
        self.search = ""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        """Folders always (what they hold may match); files whose name holds the search."""
        if not self.search:
            return paths
        words = self.search.lower()
        return [p for p in paths if words in p.name.lower() or _is_folder(p)]

    def render_label(self, node: TreeNode[DirEntry], base_style: Style, style: Style) -> Text:
        label = super().render_label(node, base_style, style)
        if node.data is None:
            return label
        if node.is_root:
            label = Text(self.root_title, style="bold")
        path = node.data.path
        mark = "[x] " if path in self.marked else "[ ] "
        try:
            st = path.lstat()
        except OSError:
            return Text.assemble(mark, label, ("  cannot be read", "dim"))
        size = "" if _is_folder(path) else human_size(st.st_size) + "  "
        date = time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))
        return Text.assemble(
            (mark, "bold" if path in self.marked else ""), label, (f"  {size}{date}", "dim")
        )

    def name_of(self, path: Path) -> str:
        """The path inside the partition, as the copy takes it: "/home/ann"."""
        relative = str(path.relative_to(self.root_path))
        return "/" if relative == "." else "/" + relative

    def chosen(self) -> list[str]:
        """The marked entries, a folder's marked content left out (the folder holds it)."""
        ordered = sorted(self.marked, key=lambda p: (len(p.parts), str(p)))
        kept: list[Path] = []
        for path in ordered:
            if not any(path.is_relative_to(parent) for parent in kept):
                kept.append(path)
        return [self.name_of(path) for path in kept]

    def action_mark(self) -> None:
        node = self.cursor_node
        if node is None or node.data is None:
            return
        path = node.data.path
        if path in self.marked:
            self.marked.discard(path)
        else:
            self.marked.add(path)
        node.refresh()
        self.post_message(self.Marked())

    class Marked(Message):
        """What is marked changed (on_file_tree_marked)."""


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()

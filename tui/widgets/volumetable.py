"""Filesystems on the machine's disks that can hold a repository."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text

from appliance.repo.mount import Volume
from appliance.units import human_size
from tui.widgets.disktable import fit
from tui.widgets.keyedtable import Cell, KeyedTable


class VolumeTable(KeyedTable):
    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(
            ("Device", "Filesystem", "Label", "Size", "On disk", "Mounted at"),
            id=id,
            classes=classes,
        )
        self.volumes: dict[str, Volume] = {}

    def show(self, volumes: Iterable[Volume]) -> None:
        rows: list[tuple[str, list[Cell]]] = []
        self.volumes = {}
        for volume in volumes:
            self.volumes[volume.node] = volume
            mounted = volume.mountpoint or ""
            if mounted and volume.read_only:
                mounted += " (ro)"
            rows.append(
                (
                    volume.node,
                    [
                        Text(volume.node, style="bold"),
                        volume.fstype,
                        fit(volume.label or "-", 16),
                        human_size(volume.size),
                        fit(volume.disk_text, 30),
                        fit(mounted or "-", 30),
                    ],
                )
            )
        self.replace_rows(rows)

    def current_volume(self) -> Volume | None:
        key = self.current_key()
        return self.volumes.get(key) if key else None

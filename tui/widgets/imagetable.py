"""The images of a repository: when, from which disk, how big, and whether restorable."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text

from appliance.jobs.catalog import ImageSummary
from appliance.units import human_size
from tui.widgets.disktable import fit
from tui.widgets.keyedtable import Cell, KeyedTable


def restorable(image: ImageSummary) -> bool:
    return image.complete and not image.problem


def when(image: ImageSummary) -> str:
    return (image.finished or image.created or "")[:16].replace("T", " ")


class ImageTable(KeyedTable):
    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(
            ("Image", "Saved", "From disk", "Disk size", "Data", "State"), id=id, classes=classes
        )
        self.images: dict[str, ImageSummary] = {}

    def show(self, images: Iterable[ImageSummary]) -> None:
        rows: list[tuple[str, list[Cell]]] = []
        self.images = {}
        ordered = sorted(images, key=lambda i: (not restorable(i), i.created or "", i.name))
        for image in ordered:
            self.images[image.name] = image
            disk = image.disk
            source = (disk.what or "?") if disk else "?"
            if disk and disk.serial:
                source = f"{source} {disk.serial[-4:]}"
            state: Cell = Text("ready", style="bold")
            if image.kind and restorable(image):
                state = Text(image.kind.split()[0], style="bold")  # "Clonezilla", "Rescuezilla"
            if image.problem:
                state = Text("damaged", style="bold red")
            elif not image.complete:
                state = Text("incomplete", style="dim")
            rows.append(
                (
                    image.name,
                    [
                        Text(fit(image.name, 28), style="bold" if restorable(image) else "dim"),
                        when(image),
                        fit(str(source), 24),
                        human_size(disk.size) if disk and disk.size else "-",
                        human_size(image.used_bytes),
                        state,
                    ],
                )
            )
        self.replace_rows(rows)

    def current_image(self) -> ImageSummary | None:
        key = self.current_key()
        return self.images.get(key) if key else None

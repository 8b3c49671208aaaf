"""An image from elsewhere, as an import stores it: what its manifest will record and the
source its bytes are read from (jobs/importimage.py stores it; jobs/shelfimport.py makes one
of a Clonezilla folder)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from appliance.io.source import ImageSource
from appliance.repo.manifest import Region
from appliance.repo.records import DiskRecord, TableRecord


@dataclass
class Incoming:
    """An image from elsewhere: what its manifest will record, and where its bytes are."""

    origin: str  # for the log and sentences: "image pc1 of the repository /media/usb/images"
    disk: DiskRecord
    table: TableRecord | None
    regions: list[Region]  # in the order of source.regions; used_bytes set, no index yet
    source: ImageSource
    created: str | None = None  # when the original was made (kept in the log)
    close: Callable[[], None] | None = None  # frees the source (open streams) once stored

    def __enter__(self) -> Incoming:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.close is not None:
            self.close()

"""Reading a saved image back: its manifest and indexes, checked, before any disk is touched."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import CorruptData, ImageError
from appliance.repo.manifest import Index, Manifest, Region, index_hash
from appliance.repo.repository import Repository


@dataclass
class LoadedImage:
    repo: Repository
    manifest: Manifest
    indexes: dict[str, Index]

    def region_index(self, region: Region) -> Index:
        return self.indexes[region.name]


def load_manifest(repo: Repository, name: str) -> Manifest:
    path = repo.image_dir(name) / "manifest.json"
    if not path.exists():
        known = ", ".join(repo.image_names()) or "none"
        raise ImageError(f"There is no image named {name} in {repo.root} (images: {known}).")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ImageError(f"The manifest of image {name} cannot be read: {exc.strerror}.") from exc
    except UnicodeDecodeError as exc:
        raise ImageError(
            f"The manifest {path} is damaged and cannot be read (it is not UTF-8 text)."
        ) from exc
    return Manifest.from_json(text, str(path))


def load_image(repo: Repository, name: str, *, require_complete: bool = True) -> LoadedImage:
    """The manifest and every index, each index checked against the hash in the manifest."""
    manifest = load_manifest(repo, name)
    if require_complete and not manifest.complete:
        raise ImageError(
            f"The image {name} is incomplete (its save did not finish), so it "
            "cannot be used; resume the save with --resume or save again."
        )
    indexes: dict[str, Index] = {}
    folder = repo.image_dir(name)
    for region in manifest.regions:
        path = folder / region.index
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise CorruptData(
                f"The index of {region.describe()} in image {name} is missing "
                "or unreadable; the image is damaged."
            ) from exc
        if index_hash(blob) != region.index_hash:
            raise CorruptData(
                f"The index of {region.describe()} in image {name} does not "
                "match its hash; the image is damaged."
            )
        index = Index.decode(blob, str(path))
        if index.size != region.size:
            raise CorruptData(
                f"The index of {region.describe()} in image {name} does not "
                "fit its region; the image is damaged."
            )
        indexes[region.name] = index
    return LoadedImage(repo, manifest, indexes)

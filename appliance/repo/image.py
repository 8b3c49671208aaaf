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
    key = repo.image_key(name, "manifest.json")
    try:
        text = repo.read(key).decode("utf-8")
    except FileNotFoundError:
        known = ", ".join(repo.image_names()) or "none"
        raise ImageError(
            f"There is no image named {name} in {repo.where} (images: {known})."
        ) from None
    except OSError as exc:
        raise ImageError(f"The manifest of image {name} cannot be read: {exc.strerror}.") from exc
    except UnicodeDecodeError as exc:
        raise ImageError(
            f"The manifest {repo.describe(key)} is damaged and cannot be read (it is not "
            "UTF-8 text)."
        ) from exc
    return Manifest.from_json(text, repo.describe(key))


def load_image(repo: Repository, name: str, *, require_complete: bool = True) -> LoadedImage:
    """The manifest and every index, each index checked against the hash in the manifest."""
    manifest = load_manifest(repo, name)
    if require_complete and not manifest.complete:
        raise ImageError(
            f"The image {name} is incomplete (its save did not finish), so it "
            "cannot be used; resume the save with --resume or save again."
        )
    indexes: dict[str, Index] = {}
    for region in manifest.regions:
        key = repo.image_key(name, region.index)
        try:
            blob = repo.read(key)
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
        index = Index.decode(blob, repo.describe(key))
        if index.size != region.size:
            raise CorruptData(
                f"The index of {region.describe()} in image {name} does not "
                "fit its region; the image is damaged."
            )
        indexes[region.name] = index
    return LoadedImage(repo, manifest, indexes)


def authenticity_note(loaded: LoadedImage) -> str | None:
    """What a restore says once of an image whose repository is not encrypted (format v1):
    nothing proves who wrote it. None for an encrypted repository's image."""
    if loaded.repo.encrypted:
        return None
    return (
        f"the image {loaded.manifest.name} is not authenticated (its repository is not "
        "encrypted, so a change by whoever can write there would not be noticed)"
    )

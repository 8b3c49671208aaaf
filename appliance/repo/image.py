"""Reading a saved image back: its manifest and indexes, checked, before any disk is touched.

In a v1 repository with a key (repo/signing.py) the manifest's bytes are checked against
their MAC (manifest.mac) before anything in them is used; the indexes' hashes in the
manifest, and the chunk names in the indexes, carry that proof to the whole image.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import CorruptData, ImageError
from appliance.repo.manifest import Index, Manifest, Region, index_hash
from appliance.repo.repository import Repository
from appliance.repo.signing import mac_key


@dataclass
class LoadedImage:
    repo: Repository
    manifest: Manifest
    indexes: dict[str, Index]

    def region_index(self, region: Region) -> Index:
        return self.indexes[region.name]


def load_manifest(repo: Repository, name: str) -> Manifest:
    """The image's manifest, checked (its own hash; in a keyed v1 repository, its MAC)."""
    key = repo.image_key(name, "manifest.json")
    try:
        blob = repo.read(key)
        if repo.signer is not None:
            repo.signer.check(name, blob, _mac_file(repo, name))
        text = blob.decode("utf-8")
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


def _mac_file(repo: Repository, name: str) -> bytes | None:
    """The image's manifest.mac, None when it has none."""
    try:
        return repo.read(mac_key(name))
    except FileNotFoundError:
        return None


def load_image(repo: Repository, name: str, *, require_complete: bool = True) -> LoadedImage:
    """The manifest and every index, each index checked against the hash in the manifest."""
    manifest = load_manifest(repo, name)
    if require_complete and not manifest.complete:
        raise ImageError(
            f"The image {name} is incomplete (its save did not finish), so it "
            "cannot be used; resume the save with --resume or save again."
        )
    return LoadedImage(repo, manifest, load_indexes(repo, manifest))


def load_indexes(repo: Repository, manifest: Manifest) -> dict[str, Index]:
    """Every index of the image, each checked against its hash in the manifest."""
    name = manifest.name
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
    return indexes


def authenticity_note(loaded: LoadedImage) -> str | None:
    """What a restore says once of an image whose repository has no key (format v1 without
    `appliance key add`): nothing proves who wrote it. None for an encrypted repository's
    image, and for a keyed v1 repository's image (it loaded: its MAC passed)."""
    if loaded.repo.encrypted or loaded.repo.signer is not None:
        return None
    return (
        f"the image {loaded.manifest.name} is not authenticated (its repository is not "
        "encrypted and has no key, so a change by whoever can write there would not be "
        f"noticed; `appliance key add --repo {loaded.repo.where}` gives it a key that signs "
        "its images)"
    )

"""images, delete and gc: what a repository holds, removing an image, and removing the chunks
that no complete image uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appliance.errors import ApplianceError, CorruptData, ImageError
from appliance.jobs.verify import last_verified
from appliance.repo.image import load_image, load_manifest
from appliance.repo.manifest import Index, Region
from appliance.repo.records import DiskRecord
from appliance.repo.repository import Repository, check_image_name


@dataclass
class ImageSummary:
    name: str
    created: str
    finished: str | None
    complete: bool
    disk: DiskRecord | None  # None when its manifest cannot be read
    used_bytes: int
    stored_bytes: int
    problem: str | None = None
    proof: str = "unproven"  # proof_word() of its regions
    proofs: dict[str, Any] = field(default_factory=dict)  # region name -> its proof
    verified: str | None = None  # when every chunk was last re-hashed
    kind: str | None = None  # another tool's image ("Clonezilla image"); None: one of ours

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created": self.created,
            "finished": self.finished,
            "complete": self.complete,
            "restorable": self.complete and not self.problem,
            "disk": {
                k: (self.disk.to_dict() if self.disk else {}).get(k)
                for k in ("model", "serial", "size", "logical_sector", "name")
            },
            "used_bytes": self.used_bytes,
            "stored_bytes": self.stored_bytes,
            "problem": self.problem,
            "proof": self.proof,
            "proofs": self.proofs,
            "verified": self.verified,
        }


def list_images(repo_path: str) -> list[ImageSummary]:
    repo = Repository.open(repo_path)
    out: list[ImageSummary] = []
    for name in repo.image_names():
        try:
            manifest = load_manifest(repo, name)
        except ApplianceError as exc:
            out.append(ImageSummary(name, "", None, False, None, 0, 0, problem=str(exc)))
            continue
        out.append(
            ImageSummary(
                name,
                manifest.created,
                manifest.finished,
                manifest.complete,
                manifest.disk,
                manifest.used_bytes,
                manifest.figures.new_bytes,
                proof=proof_word(manifest.regions),
                proofs={r.name: r.proof for r in manifest.regions if r.proof is not None},
                verified=last_verified(repo, name),
            )
        )
    return out


def proof_word(regions: list[Region]) -> str:
    """ "proven": every partition saved through a used-block map passed its checker on the
    image (the others are byte-for-byte copies); "fs errors": a source filesystem failed
    its own checker (saved whole); "unproven": not checked (--no-check, no checker, an
    image older than proofs)."""
    if any((r.proof or {}).get("source") == "failed" for r in regions):
        return "fs errors"
    if any(r.method == "partclone" and (r.proof or {}).get("result") != "passed" for r in regions):
        return "unproven"
    return "proven"


@dataclass
class GcResult:
    removed_chunks: int
    removed_bytes: int
    kept_chunks: int
    removed_tmp: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image, what gc did about it)
    dry_run: bool = False

    def skipped_json(self) -> list[dict[str, str]]:
        return [{"image": name, "reason": reason} for name, reason in self.skipped]


def _readable_indexes(repo: Repository, name: str) -> list[Index]:
    """The indexes of an image that still decode, whatever its manifest says."""
    prefix = f"images/{name}/"
    keys = [
        key
        for key in repo.store.list(prefix)
        if key.endswith(".idx") and "/" not in key[len(prefix) :]
    ]
    out: list[Index] = []
    for key in sorted(keys):
        try:
            out.append(Index.decode(repo.read(key), repo.describe(key)))
        except (OSError, CorruptData):
            continue
    return out


def _chunks_in_use(repo: Repository, skipped: list[tuple[str, str]]) -> set[str]:
    """Every chunk a complete image names, and every chunk a damaged image might still use.

    A damaged image (manifest or index unreadable) keeps every chunk that one of its readable
    indexes names. When nothing of it can be read, no one can say which chunks it uses: gc
    refuses rather than guess, and says how to go on.
    """
    keep: set[str] = set()
    for name in repo.image_names():
        try:
            manifest = load_manifest(repo, name)
        except (ApplianceError, ValueError) as exc:  # ValueError: a manifest not in UTF-8
            indexes = _readable_indexes(repo, name)
            if not indexes:
                raise ImageError(
                    f"gc removed nothing: the manifest of image {name} cannot be read and "
                    "none of its indexes either, so the chunks it uses are unknown; "
                    f"delete it with `appliance delete --repo {repo.where} --image {name}` and "
                    "run gc again."
                ) from exc
            for index in indexes:
                keep.update(c for c in index.chunks if c is not None)
            skipped.append(
                (
                    name,
                    f"its manifest is damaged; the chunks named by its "
                    f"{len(indexes)} readable indexes were kept",
                )
            )
            continue
        if not manifest.complete:
            continue  # an unfinished save: never restorable, its chunks are not kept
        try:
            loaded = load_image(repo, name)
        except ApplianceError:
            indexes = _readable_indexes(repo, name)
            for index in indexes:
                keep.update(c for c in index.chunks if c is not None)
            skipped.append(
                (
                    name,
                    f"an index is damaged; the chunks named by its "
                    f"{len(indexes)} readable indexes of "
                    f"{len(manifest.regions)} were kept",
                )
            )
            continue
        for index in loaded.indexes.values():
            keep.update(c for c in index.chunks if c is not None)
    return keep


def collect(repo: Repository, *, dry_run: bool) -> GcResult:
    """gc's work, under the repository lock that the caller holds."""
    skipped: list[tuple[str, str]] = []
    keep = _chunks_in_use(repo, skipped)
    removed = removed_bytes = kept = 0
    for name in repo.chunk_names():
        if name in keep:
            kept += 1
            continue
        size = repo.chunk_size(name)
        if not dry_run:
            repo.delete_chunk(name)
        removed += 1
        removed_bytes += size
    tmp = 0
    if not dry_run:
        tmp = repo.remove_tmp_files(everywhere=True)
        repo.remove_partial_images()
        repo.sync()
    return GcResult(removed, removed_bytes, kept, tmp, skipped, dry_run)


def gc(repo_path: str, *, dry_run: bool = False) -> GcResult:
    """Remove the chunks no complete image uses (with dry_run: only count them)."""
    repo = Repository.open(repo_path)
    with repo.lock("gc"):
        return collect(repo, dry_run=dry_run)


@dataclass
class DeleteResult:
    image: str
    gc: GcResult | None  # what gc removed (run_gc) or would remove
    gc_refused: str | None = None  # why gc cannot run yet (another image is unreadable)


def delete_image(repo_path: str, name: str, *, run_gc: bool = False) -> DeleteResult:
    """Remove an image under the repository lock; then run gc or count what it frees.

    The store removes the image's files as one step where it can (a folder is renamed to a
    hidden name first), so a delete that is stopped half-way leaves no half image behind;
    gc removes such leftovers.
    """
    repo = Repository.open(repo_path)
    if check_image_name(name) not in repo.image_names():
        known = ", ".join(repo.image_names()) or "none"
        raise ImageError(f"There is no image named {name} in {repo.where} (images: {known}).")
    with repo.lock("delete"):
        repo.remove_image(name)
        try:
            return DeleteResult(name, collect(repo, dry_run=not run_gc))
        except ImageError as exc:
            return DeleteResult(name, None, str(exc))

"""images and gc: what a repository holds, and removing chunks no complete image uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appliance.errors import ApplianceError
from appliance.jobs.imageread import load_image, load_manifest
from appliance.manifest import Region
from appliance.repo import Repository


@dataclass
class ImageSummary:
    name: str
    created: str
    finished: str | None
    complete: bool
    disk: dict[str, Any]
    used_bytes: int
    stored_bytes: int
    problem: str | None = None
    proof: str = "unproven"                   # proof_word() of its regions
    proofs: dict[str, Any] = field(default_factory=dict)  # region name -> its proof

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "created": self.created, "finished": self.finished,
                "complete": self.complete, "restorable": self.complete and not self.problem,
                "disk": {k: self.disk.get(k) for k in ("model", "serial", "size",
                                                       "logical_sector", "name")},
                "used_bytes": self.used_bytes, "stored_bytes": self.stored_bytes,
                "problem": self.problem, "proof": self.proof, "proofs": self.proofs}


def list_images(repo_path: str) -> list[ImageSummary]:
    repo = Repository.open(repo_path)
    out: list[ImageSummary] = []
    for name in repo.image_names():
        try:
            manifest = load_manifest(repo, name)
        except ApplianceError as exc:
            out.append(ImageSummary(name, "", None, False, {}, 0, 0, problem=str(exc)))
            continue
        out.append(ImageSummary(name, manifest.created, manifest.finished, manifest.complete,
                                manifest.disk, manifest.used_bytes,
                                int(manifest.stats.get("new_bytes", 0)),
                                proof=proof_word(manifest.regions),
                                proofs={r.name: r.proof for r in manifest.regions
                                        if r.proof is not None}))
    return out


def proof_word(regions: list[Region]) -> str:
    """"proven": every partition saved through a used-block map passed its checker on the
    image (the others are byte-for-byte copies); "fs errors": a source filesystem failed
    its own checker (saved whole); "unproven": not checked (--no-check, no checker, an
    image older than proofs)."""
    if any((r.proof or {}).get("source") == "failed" for r in regions):
        return "fs errors"
    if any(r.method == "partclone" and (r.proof or {}).get("result") != "passed"
           for r in regions):
        return "unproven"
    return "proven"


@dataclass
class GcResult:
    removed_chunks: int
    removed_bytes: int
    kept_chunks: int
    removed_tmp: int


def gc(repo_path: str) -> GcResult:
    repo = Repository.open(repo_path)
    with repo.lock("gc"):
        keep: set[str] = set()
        for name in repo.image_names():
            # A damaged image stops gc (load_* raise): deleting its chunks could lose data.
            if not load_manifest(repo, name).complete:
                continue
            loaded = load_image(repo, name)
            for index in loaded.indexes.values():
                keep.update(c for c in index.chunks if c is not None)
        removed = removed_bytes = kept = 0
        for path in repo.iter_chunks():
            if path.name in keep:
                kept += 1
                continue
            size = path.stat().st_size
            path.unlink()
            removed += 1
            removed_bytes += size
        tmp = repo.remove_tmp_files()
        repo.sync()
        return GcResult(removed, removed_bytes, kept, tmp)

"""Proving a save: each partition saved through a used-block map is checked on the image.

As soon as the last window of such a region is stored, its index goes to the save's view
(one copy-on-write view process for the whole save, appliance.io.cowview), which then serves
the region as stored, from its chunks; a thread runs the filesystem's own checker on it,
read-only (appliance.fs.check), while the next region's bytes move; only the last region's
proof is left when the copy ends, and it overlaps the sync. Proofs run at a lower
priority, on the CPU time the copy leaves idle. A wrong used-block map (a tool that misses
metadata) fails the check here, at save time, instead of breaking a restored disk later.
(Moving the largest mapped region first was measured and dropped: the small regions' proofs
then piled up at the end; in disk order the reads stay sequential and the tail was as
short or shorter.)

When the image of a region fails, the same checker runs on the source partition: if the
source passes, the map was wrong; if it fails too, the source filesystem was already
damaged. Either way the save copies that partition again whole, byte for byte (always
faithful), and the region's `proof` and `note` say why.

Region.proof (manifest.json): {"tool": "e2fsck -fn", "result": "passed" | "failed" |
"skipped", "seconds": float, "detail": str | null, and after a failure "source": "passed" |
"failed" | "skipped"}. Regions copied whole or not copied (raw, swap, the table) have none.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.fs import check as fscheck
from appliance.io.cowview import CowView
from appliance.io.pipeline import WINDOW, Window
from appliance.repo.manifest import Index, Region
from appliance.repo.repository import Repository

NO_CHECK = "not checked (--no-check)"
PROOF_NICE = 10


def proven_kind(region: Region) -> bool:
    """Regions whose image depends on a used-block map, and so are proven."""
    return region.method == "partclone"


def skip_all(regions: Sequence[Region], why: str = NO_CHECK) -> None:
    for region in regions:
        if proven_kind(region):
            checker = fscheck.checker_for(region.fstype)
            region.proof = fscheck.CheckResult(
                checker.name if checker else "-", "skipped", 0.0, why
            ).to_json()


def idle_priority() -> None:
    """Lower the calling thread, and the processes it starts (the view, the checker), to
    nice PROOF_NICE: a proof runs on the CPU time the save's copy leaves idle and does not
    slow the copy it overlaps; once the copy ends it has the machine to itself. (Linux: a
    thread's nice value is its own and children inherit it. Not SCHED_IDLE: on a busy
    machine that starves a proof for minutes.)"""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PROOF_NICE)


class WindowCounter:
    """Calls `done(region)` once the last window of a region has been through `work`."""

    def __init__(self, counts: dict[int, int], done: Callable[[int], None]) -> None:
        self.left = dict(counts)
        self.done = done
        self.lock = threading.Lock()
        for region, count in counts.items():
            if count == 0:
                done(region)

    def wrap(
        self, work: Callable[[Window, memoryview], None]
    ) -> Callable[[Window, memoryview], None]:
        def counted(win: Window, data: memoryview) -> None:
            work(win, data)
            with self.lock:
                self.left[win.region] -= 1
                last = self.left[win.region] == 0
            if last:
                self.done(win.region)

        return counted


class ProofView:
    """One read-only view for all of a save's proofs, mounted while the first region moves
    (one child process for the whole save): REGION.idx, written once that region is stored,
    makes the file VIEW/REGION appear; removing it frees that file's cache."""

    def __init__(self, repo: Repository, workdir: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="appliance-proof-", dir=workdir))
        self.view = CowView(
            0,
            repo=repo.location,
            index_dir=str(self.folder),
            workdir=workdir,
            purpose="for checking the image",
        )
        self.error: ApplianceError | None = None
        self.mounted = threading.Thread(target=self._mount, name="proof-view")
        self.mounted.start()

    def _mount(self) -> None:
        idle_priority()
        try:
            self.view.__enter__()
        except ApplianceError as exc:  # no FUSE: nothing can be proven, nothing is wrong
            self.error = exc

    def publish(self, index: Index) -> str:
        """Write a region's index (whole, or not at all); the path of its file in the view."""
        tmp = self.folder / f".{index.region}.tmp"
        tmp.write_bytes(index.encode())
        os.replace(tmp, self.folder / f"{index.region}.idx")
        return os.path.join(self.view.path, index.region)

    def withdraw(self, region: Region) -> None:
        with contextlib.suppress(OSError):
            (self.folder / f"{region.name}.idx").unlink()

    def close(self) -> None:
        self.mounted.join()
        self.view.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class Prover:
    """Proves each region handed over on a thread of its own: proofs of regions whose copy
    ends close together run side by side (the copy leaves cores idle at its end)."""

    def __init__(
        self,
        repo: Repository,
        regions: Sequence[Region],
        nodes: dict[int, str],
        log: Callable[[str], None],
    ) -> None:
        self.repo = repo
        self.regions = regions
        self.nodes = nodes  # region number -> source partition node
        self.log = log
        self.stop = threading.Event()
        self.failed: list[int] = []  # regions to save again whole
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        workdir = os.environ.get("APPLIANCE_TMP", "/var/tmp")
        checked = [r for r in regions if proven_kind(r) and fscheck.checker_for(r.fstype)]
        self.view = ProofView(repo, workdir) if checked else None

    def submit(self, number: int, used: list[tuple[int, int]], chunks: list[str | None]) -> None:
        if not proven_kind(self.regions[number]) or self.stop.is_set():
            return
        thread = threading.Thread(
            target=self._run,
            args=(number, list(used), list(chunks)),
            name=f"proof-{self.regions[number].name}",
            daemon=True,
        )
        with self.lock:
            self.threads.append(thread)
        thread.start()

    def finish(self) -> list[int]:
        """Wait for every proof handed over; the regions whose proof failed."""
        for thread in list(self.threads):
            thread.join()
        if self.view is not None:
            self.view.close()
        if self.errors:
            raise self.errors[0]
        return sorted(self.failed)

    def abort(self) -> None:
        """Stop: proofs in progress end with their checker; the view is unmounted."""
        self.stop.set()
        for thread in list(self.threads):
            thread.join()
        if self.view is not None:
            self.view.close()

    def _run(self, number: int, used: list[tuple[int, int]], chunks: list[str | None]) -> None:
        idle_priority()
        try:
            self._prove(number, used, chunks)
        except BaseException as exc:  # handed to the save's thread by finish()
            with self.lock:
                self.errors.append(exc)

    def _wait_stored(self, chunks: list[str | None]) -> bool:
        """Wait until every chunk of the region is in the repository: a window whose
        content another worker was still storing counts as done before its file exists."""
        names = {name for name in chunks if name is not None}
        while names and not self.stop.is_set():
            names = {name for name in names if not self.repo.chunk_exists(name)}
            if names:
                time.sleep(0.02)
        return not self.stop.is_set()

    def _prove(self, number: int, used: list[tuple[int, int]], chunks: list[str | None]) -> None:
        region = self.regions[number]
        if not self._wait_stored(chunks):
            return
        if fscheck.checker_for(region.fstype) is None:
            result = fscheck.CheckResult(
                "-", "skipped", 0.0, f"no checker is known for {region.fstype or 'it'}"
            )
        else:
            assert self.view is not None
            try:
                index = Index(region.name, WINDOW, region.size, used, chunks)
                result = prove_stored(self.view, region, index)
            finally:
                self.view.withdraw(region)
        region.proof = result.to_json()
        self.log(
            f"{region.name}: {result.tool} on the image: {result.result} in "
            f"{result.seconds:.1f} s" + (f" ({result.detail})" if result.detail else "")
        )
        if result.result != "failed" or self.stop.is_set():
            return
        source = fscheck.check(self.nodes[number], region.fstype, is_file=False)
        region.proof["source"] = source.result
        self.log(
            f"{region.name}: {source.tool} on the source partition: {source.result}"
            + (f" ({source.detail})" if source.detail else "")
        )
        if source.result == "failed":
            region.note = (
                f"copied whole: the source filesystem has errors ({source.tool}: "
                f"{source.detail}); the image is a faithful copy"
            )
        else:
            region.note = (
                f"copied whole: its image failed {result.tool} ({result.detail}) "
                "while the source passed: the used-block map was wrong"
            )
        with self.lock:
            self.failed.append(number)


def prove_stored(view: ProofView, region: Region, index: Index) -> fscheck.CheckResult:
    """Run the region's checker on its file in the view, once the view reads `index`."""
    checker = fscheck.checker_for(region.fstype)
    assert checker is not None
    started = time.monotonic()
    path = view.publish(index)
    view.mounted.join()
    if view.error is not None:
        return fscheck.CheckResult(
            checker.name, "skipped", time.monotonic() - started, str(view.error)
        )
    result = fscheck.check(path, region.fstype, is_file=True)
    return fscheck.CheckResult(
        result.tool, result.result, time.monotonic() - started, result.detail
    )


def proof_warnings(regions: list[Region]) -> list[str]:
    """One sentence per partition whose image was not proven or failed its check."""
    lines: list[str] = []
    for region in regions:
        found = region.proof or {}
        what = f"{region.describe()}: {found.get('tool')}"
        if found.get("result") == "failed" and found.get("source") == "failed":
            lines.append(
                f"{what} finds errors on the source too; saved whole, a faithful "
                "copy (repair the source)"
            )
        elif found.get("result") == "failed":
            lines.append(f"{what} failed on the image (wrong used-block map); saved again whole")
        elif found.get("result") == "skipped" and found.get("detail") != NO_CHECK:
            lines.append(f"{what} could not run, so it is unproven: {found.get('detail')}")
    return lines

"""A fake engine for the TUI tests: fixed disks, images and jobs, so that every screen can be
driven and photographed without root, and every picture is the same on every machine."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from appliance.disk.model import Disk, Partition
from appliance.disk.probe import Problem, Scan
from appliance.errors import ApplianceError, Cancelled, SafetyRefusal
from appliance.jobs.catalog import ImageSummary
from appliance.jobs.plantext import PlanText, holds_now
from appliance.plan.preflight import Finding, Preflight, Usage
from appliance.progress import Progress, ProgressEvent
from appliance.repo.mount import RepoMount, Volume
from appliance.repo.netaddress import parse_address
from appliance.repo.netmount import HeldMount, NetOptions
from appliance.repo.records import DiskRecord
from appliance.repo.sshhosts import HostKey, HostKeyUnknown
from tui.backend import CLONE_MISSING
from tui.jobspec import JobSpec, JobSummary, VerifyRequest, WritePlan

GB = 1000**3
MiB = 1024 * 1024
EFI = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
MSR = "e3c9e316-0b5c-4db8-817d-f92df00215ae"
DATA = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"
RECOVERY = "de94bba4-06d1-4d40-a16a-bfd50179d6ac"

LAPTOP = Disk(
    name="sda",
    node="/dev/sda",
    size=500_107_862_016,
    logical_sector=512,
    physical_sector=512,
    model="Samsung SSD 860 EVO 500GB",
    serial="S3Z2NB0K123456A",
    devnum=(8, 0),
    table="gpt",
    table_id="8a1b2c3d-0000-4000-8000-000000000001",
    partitions=(
        Partition(
            1,
            MiB,
            100 * MiB,
            "/dev/sda1",
            EFI,
            fstype="vfat",
            fsversion="FAT32",
            label="SYSTEM",
            uuid="1A2B-3C4D",
            name="EFI system partition",
        ),
        Partition(2, 101 * MiB, 16 * MiB, "/dev/sda2", MSR, name="Microsoft reserved"),
        Partition(
            3,
            117 * MiB,
            499_000 * MiB,
            "/dev/sda3",
            DATA,
            fstype="ntfs",
            label="Windows",
            uuid="01D9A1B2C3D4E5F6",
        ),
        Partition(
            4,
            499_117 * MiB,
            600 * MiB,
            "/dev/sda4",
            RECOVERY,
            fstype="ntfs",
            label="Recovery",
            uuid="01D9A1B2C3D4E5F7",
        ),
    ),
)
BLANK = Disk(
    name="sdb",
    node="/dev/sdb",
    size=1_000_204_886_016,
    logical_sector=512,
    physical_sector=4096,
    model="WDC WD10EZEX-08WN4A0",
    serial="WD-WCC6Y3KX4571",
    devnum=(8, 16),
)
STICK = Disk(
    name="sdc",
    node="/dev/sdc",
    size=61_530_439_680,
    logical_sector=512,
    physical_sector=512,
    model="SanDisk Ultra",
    serial="4C530001230918115234",
    devnum=(8, 32),
    removable=True,
    table="dos",
    table_id="0x1a2b3c4d",
    partitions=(
        Partition(
            1,
            MiB,
            61_529_000_000,
            "/dev/sdc1",
            "07",
            fstype="exfat",
            label="IMAGES",
            uuid="64A1-2B3C",
        ),
    ),
)

IMAGES = [
    ImageSummary(
        "office-pc-2024-04-02",
        "2024-04-02T09:12:40+0200",
        "2024-04-02T09:31:05+0200",
        True,
        DiskRecord(
            "sda",
            "/dev/sda",
            LAPTOP.size,
            model="Samsung SSD 860 EVO 500GB",
            serial="S3Z2NB0K123456A",
        ),
        61_204_557_824,
        28_120_334_336,
    ),
    ImageSummary(
        "old-laptop",
        "2024-03-28T17:02:11+0100",
        None,
        False,
        DiskRecord(
            "sda", "/dev/sda", 1_000_204_886_016, model="TOSHIBA MQ01ABD100", serial="X5TGT0QZT"
        ),
        0,
        0,
    ),
]


class FakeMount(RepoMount):
    def ensure(self, writable: bool) -> None:
        self.writable = writable

    def unmount(self) -> None:
        self.owned = False


class FakeShare(HeldMount):
    """A share that is "mounted" at an existing folder; close() only records it."""

    def __init__(self, location: str, folder: Path) -> None:
        self.location = location
        self.folder = folder
        self.closed = False

    def check_writable(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeBackend:
    """Records what it was asked to do; jobs emit fixed progress and may be held by `gate`."""

    include_loop: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    disks: list[Disk] = field(default_factory=lambda: [LAPTOP, BLANK, STICK])
    problems: list[Problem] = field(default_factory=list)
    images_list: list[ImageSummary] = field(default_factory=lambda: list(IMAGES))
    written_files: list[list[str]] = field(default_factory=list)  # write_file_job's targets
    restored_many: list[list[str]] = field(default_factory=list)  # restores_job's targets
    clone: bool = True
    blocked: bool = False
    gate: threading.Event | None = None  # jobs wait for it (cancel tests, snapshots)
    fail: BaseException | None = None  # jobs raise it
    ran: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    whole: dict[str, str] = field(default_factory=dict)  # disk -> "ext4 LABEL" (no table)
    # mount_network: what each try was given; a new ssh server's key, then a password, first
    share_tries: list[tuple[str | None, str | None]] = field(default_factory=list)
    casts: list[tuple[str, str, int, int]] = field(default_factory=list)  # cast_send_job
    received: list[str] = field(default_factory=list)  # receive_job's targets

    def scan(self) -> Scan:
        return Scan(tuple(self.disks), tuple(self.problems))

    def measure(self, disk: Disk) -> list[Usage]:
        used = {1: 34 * MiB, 2: 16 * MiB, 3: 61_000_000_000, 4: 510 * MiB}
        out = [Usage(None, disk.node, disk.size, MiB, "table")]
        for part in disk.partitions:
            method = "raw" if part.fstype is None else "partclone"
            out.append(
                Usage(
                    part.number,
                    part.node,
                    part.size,
                    part.size if method == "raw" else used.get(part.number, GB),
                    method,
                )
            )
        return out

    def images(self, repo: str) -> list[ImageSummary]:
        return list(self.images_list)

    def preflight(self, disk: Disk, repo: str) -> Preflight:
        findings = [
            Finding(
                "hibernated",
                "warning",
                "Windows on partition 3 (ntfs, Windows) is "
                "hibernated (Fast Startup): the image holds Windows as it was suspended, "
                "and files saved since may be missing; start Windows, turn off Fast "
                "Startup, shut down, then save.",
                3,
            ),
            Finding(
                "raw",
                "info",
                "Partition 2 (unformatted) will be copied whole (16.8 MB): it holds no filesystem.",
                2,
            ),
            Finding(
                "space",
                "info",
                "The image holds up to 61.6 GB (less after compression "
                "and deduplication); the repository has 48.2 GB free.",
            ),
        ]
        if self.blocked:
            findings.insert(
                0,
                Finding(
                    "refused",
                    "stop",
                    f"The source {disk.describe()} "
                    "holds the repository /media/images; choose another "
                    "disk or another repository.",
                ),
            )
        usage = tuple(self.measure(disk))
        return Preflight(disk, repo, usage, 61_600_000_000, 48_200_000_000, tuple(findings))

    def plan_restore(self, repo: str, image: str, target: str) -> WritePlan:
        disk = next(d for d in self.disks if d.name == target)
        if target == "sdc":
            raise SafetyRefusal(
                f"The target {disk.describe()} holds the repository {repo}; "
                "choose another disk or another repository."
            )
        layout = (
            "GPT partition table",
            "partition 1: 104.9 MB vfat SYSTEM (partclone)",
            "partition 2: 16.8 MB unformatted (raw)",
            "partition 3: 523.2 GB ntfs Windows (partclone)",
            "partition 4: 629.1 MB ntfs Recovery (partclone)",
            "500.1 GB at the end stay unallocated",
        )
        text = PlanText(
            "restore",
            f"image {image}, saved 2024-04-02 09:12 from Samsung "
            "SSD 860 EVO 500GB, serial S3Z2NB0K123456A (500.1 GB), 61.2 GB of data",
            disk.describe(),
            holds_now(disk, self.whole.get(disk.name)),
            layout,
            (),
        )
        return WritePlan("restore", disk, text, 61_204_557_824, None, repo, image)

    def clone_available(self) -> bool:
        return self.clone

    def plan_clone(self, source: str, target: str) -> WritePlan:
        if not self.clone:
            raise ApplianceError(CLONE_MISSING)
        src = next(d for d in self.disks if d.name == source)
        dst = next(d for d in self.disks if d.name == target)
        layout = (
            "GPT partition table",
            "partition 1: 104.9 MB vfat SYSTEM (partclone)",
            "partition 2: 16.8 MB unformatted (raw)",
            "partition 3: 998.3 GB ntfs Windows (partclone, grown from 523.2 GB)",
            "partition 4: 629.1 MB ntfs Recovery (partclone, moved)",
        )
        text = PlanText(
            "clone",
            f"a copy of {src.describe()}",
            dst.describe(),
            holds_now(dst, self.whole.get(dst.name)),
            layout,
            (),
        )
        return WritePlan("clone", dst, text, 61_204_557_824)

    def volumes(self, disks: Sequence[Disk]) -> list[Volume]:
        return [
            Volume(
                "/dev/sdc1",
                "sdc",
                STICK.describe(),
                1,
                STICK.partitions[0].size,
                "exfat",
                "IMAGES",
                "/media/images",
            ),
            Volume(
                "/dev/sda3",
                "sda",
                LAPTOP.describe(),
                3,
                LAPTOP.partitions[2].size,
                "ntfs",
                "Windows",
                None,
            ),
        ]

    def mount(self, node: str, *, writable: bool, avoid: Sequence[str] = ()) -> RepoMount:
        self.mounted.append(node)
        if node == "/dev/sdc1":
            return FakeMount(node, Path("/media/images"), True, False, "exfat")
        return FakeMount(
            node, Path(f"/run/appliance/repo-{Path(node).name}"), writable, True, "ntfs"
        )

    def mount_network(self, location: str, options: NetOptions) -> HeldMount:
        self.share_tries.append((options.accept_host_key, options.password))
        address = parse_address(location)
        if options.accept_host_key != "SHA256:fake":
            raise HostKeyUnknown(address, [HostKey("line", "ED25519", "SHA256:fake")])
        if options.password is None and options.ask is not None:
            options.ask(f"Password for {address.user}@{address.where}: ")
        return FakeShare(location, Path("/tmp"))

    def today(self) -> str:
        return "2024-05-01"

    def free(self, path: str) -> int | None:
        return 48_200_000_000

    def repo_disks(self, path: str) -> set[str]:
        return {"sdc"} if path.startswith("/media/images") else set()

    def whole_filesystem(self, disk: Disk) -> str | None:
        return self.whole.get(disk.name)

    # -- jobs -----------------------------------------------------------------------------
    def _runner(self, kind: str, total: int, summary: JobSummary):  # type: ignore[no-untyped-def]
        def run(progress: Progress, cancel: threading.Event) -> JobSummary:
            self.ran.append(kind)
            emit = progress.listener
            assert emit is not None
            phase = {"save": "save", "restore": "restore", "clone": "clone", "write": "write"}.get(
                kind, "verify"
            )
            if kind in ("restore", "clone"):
                emit(ProgressEvent("table", 0, total, 0.0, None, 0.4, "writing the table"))
            emit(
                ProgressEvent(
                    phase,
                    total * 42 // 100,
                    total,
                    187_400_000.0,
                    190.0,
                    137.0,
                    f"{phase} partition 3 (ntfs, Windows)",
                )
            )
            if self.gate is not None:
                while not self.gate.wait(0.02):
                    if cancel.is_set():
                        raise Cancelled("Stopped by the user.")
            if self.fail is not None:
                raise self.fail
            emit(ProgressEvent("done", total, total, 187_400_000.0, 0.0, 326.6, "done"))
            return summary

        return run

    def save_job(self, disk: Disk, repo: str, image: str, *, resume: bool) -> JobSpec:
        summary = JobSummary(
            (
                f"Saved {disk.describe()} as image {image}: 61.2 GB in 5:26 (187.4 MB/s).",
                "28.1 GB stored in 7012 new chunks; 0 chunks were already in the repository.",
            ),
            "Not verified yet: press V to re-read and check every chunk of the image.",
            VerifyRequest(repo, image),
        )
        return JobSpec(
            "save",
            f"Save {disk.describe()} as image {image}",
            self._runner("save", 61_204_557_824, summary),
            image=image,
        )

    def write_job(self, plan: WritePlan) -> JobSpec:
        summary = JobSummary(
            (
                f"Restored image {plan.image} onto {plan.target.describe()}: "
                "61.2 GB in 5:26 (187.4 MB/s).",
            ),
            "Every chunk was re-hashed as it was read. Press V to compare "
            "the whole disk with the image.",
            VerifyRequest(plan.repo, plan.image, plan.target.name)
            if plan.kind == "restore"
            else None,
        )
        return JobSpec(
            plan.kind,
            f"{plan.kind.capitalize()} {plan.source} onto {plan.target.describe()}",
            self._runner(plan.kind, plan.total, summary),
            target=plan.target,
        )

    def plan_write_file(self, path: str, targets: Sequence[str]) -> list[WritePlan]:
        if not path.endswith((".img", ".iso", ".img.xz")):
            raise ApplianceError(f"{path} is not a disk image file this tool writes.")
        plans = []
        for name in targets:
            disk = next(d for d in self.disks if d.name == name)
            text = PlanText(
                "write",
                f"image file {path.rsplit('/', 1)[-1]} (raw image, 1.1 GB)",
                disk.describe(),
                holds_now(disk, self.whole.get(disk.name)),
                ("the file's 1.1 GB, then read back and compared",),
                (),
            )
            plans.append(WritePlan("write", disk, text, 1_073_741_824, path))
        return plans

    def write_file_job(self, plans: Sequence[WritePlan]) -> JobSpec:
        self.written_files.append([p.target.name for p in plans])
        lines = (
            f"Wrote {plans[0].engine_plan} onto {len(plans)} disk(s): 1.1 GB in 0:09 "
            "(119.3 MB/s).",
            *(f"{p.target.node}: written and verified (the image, blake3 matches the file)."
              for p in plans),
        )  # fmt: skip
        summary = JobSummary(lines, "Every disk was read back and matches the file.")
        return JobSpec(
            "write",
            f"Write {plans[0].engine_plan} onto {', '.join(p.target.node for p in plans)}",
            self._runner("write", 1_073_741_824, summary),
            targets=tuple(p.target for p in plans),
        )

    def plan_restores(self, repo: str, image: str, targets: Sequence[str]) -> list[WritePlan]:
        return [self.plan_restore(repo, image, name) for name in targets]

    def restores_job(self, plans: Sequence[WritePlan]) -> JobSpec:
        self.restored_many.append([p.target.name for p in plans])
        lines = (
            f"Restored image {plans[0].image} onto {len(plans)} of {len(plans)} disks: "
            "61.2 GB in 5:26 (187.4 MB/s).",
            *(f"{p.target.node}: restored and proven (every chunk re-hashed as it was read, "
              "the table made valid last)." for p in plans),
        )  # fmt: skip
        summary = JobSummary(
            lines, "Every chunk was re-hashed once as it was read, for every disk."
        )
        return JobSpec(
            "restore",
            f"Restore {plans[0].source} onto {', '.join(p.target.node for p in plans)}",
            self._runner("restore", plans[0].total, summary),
            targets=tuple(p.target for p in plans),
        )

    def verify_job(self, request: VerifyRequest) -> JobSpec:
        what = (
            f"/dev/{request.disk} holds the same data as image {request.image}"
            if request.disk
            else f"Image {request.image} is intact: 7012 chunks re-hashed"
        )
        summary = JobSummary((f"{what} (61.2 GB in 5:26, 187.4 MB/s).",), "Verified.")
        return JobSpec(
            "verify",
            f"Verify image {request.image}",
            self._runner("verify", 61_204_557_824, summary),
        )

    # -- the Room screen: multicast ----------------------------------------------------
    def cast_send_job(self, repo: str, image: str, receivers: int, wait: int) -> JobSpec:
        self.casts.append((repo, image, receivers, wait))
        summary = JobSummary(
            (
                f"Sent image {image} to 2 of {receivers} receivers (1 did not come within "
                f"{wait} s): 28.1 GB in 4:10.",
            ),
            "Each receiver re-hashed every chunk it wrote; its own screen says how it ended.",
        )
        return JobSpec(
            "cast", f"Send image {image} to {receivers} PCs (multicast)",
            self._runner("cast", 28_100_000_000, summary), image=image,
        )  # fmt: skip

    def plan_receive(self, target: str) -> WritePlan:
        disk = next(d for d in self.disks if d.name == target)
        if target == "sdc":
            raise SafetyRefusal(
                f"The target {disk.describe()} is the USB stick this system started from; "
                "choose another disk."
            )
        text = PlanText(
            "receive",
            "the image a multicast sender streams (cast send on another PC)",
            disk.describe(),
            holds_now(disk, self.whole.get(disk.name)),
            ("the partitions of the image that is streamed, fitted onto this disk",),
            (),
        )
        return WritePlan("receive", disk, text, 0)

    def receive_job(self, plan: WritePlan) -> JobSpec:
        self.received.append(plan.target.name)
        summary = JobSummary(
            (
                f"Received image lab onto {plan.target.node} in 250.0 s: 7012 chunks from the "
                "stream, 3 fetched over HTTP (3 damaged in the stream).",
            ),
            "Every chunk was checked against its name as it was written.",
        )
        return JobSpec(
            "restore", f"Receive a multicast image onto {plan.target.describe()}",
            self._runner("restore", 28_100_000_000, summary), target=plan.target,
        )  # fmt: skip

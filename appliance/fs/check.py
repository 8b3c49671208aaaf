"""Each filesystem's own checker, run read-only, and what its output means.

A save proves an image region by running the filesystem's checker on a read-only view of the
region as stored (appliance.jobs.proof), and, when that fails, on the source partition with
the same flags, to tell a wrong used-block map from a filesystem that was already damaged.

Every checker here is given its "change nothing" flag; the view it reads absorbs writes
anyway. Each works on a regular file as well as on a block device (xfs_repair needs -f for a
file), so no loop device is needed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from appliance.errors import ToolFailed, ToolMissing
from appliance.tools import run

# A checker reads metadata only; a large, full filesystem can take a while.
CHECK_TIMEOUT = 3600.0
DETAIL_CHARS = 200


@dataclass(frozen=True)
class Checker:
    fstypes: tuple[str, ...]  # blkid TYPE values it checks
    argv: tuple[str, ...]  # the program and its read-only flags
    file_argv: tuple[str, ...] = ()  # extra flags when the target is a regular file
    clean: str | None = None  # a line a clean run must print (ntfsfix)
    unclean: tuple[str, ...] = ()  # text that means "not clean" even on exit 0
    noise: str = r"$^"  # progress lines to leave out of the detail

    @property
    def name(self) -> str:
        """How the manifest and the log name the check, e.g. "e2fsck -fn"."""
        return " ".join(self.argv)


CHECKERS: tuple[Checker, ...] = (
    # -n exits 0 on a journal that needs replaying, after saying it skipped the recovery.
    Checker(
        ("ext2", "ext3", "ext4"),
        ("e2fsck", "-fn"),
        unclean=("skipping journal recovery",),
        noise=r"^(e2fsck \d|Pass \d|.*: \d+/\d+ files |.*\*+ WARNING: Filesystem still has"
        r" errors|[\w ]+\? no$)",
    ),
    Checker(
        ("btrfs",),
        ("btrfs", "check", "--readonly"),
        noise=r"^(\[\d/\d\]|Opening filesystem|Checking filesystem on|UUID:|found \d+ bytes"
        r"|total |btree space|file data blocks| referenced)",
    ),
    Checker(
        ("xfs",),
        ("xfs_repair", "-n"),
        file_argv=("-f",),
        noise=r"^(Phase \d|\s+- |Cannot get host filesystem geometry|Repair may fail if"
        r"|the image and the host|No modify flag set)",
    ),
    Checker(
        ("ntfs",),
        ("ntfsfix", "-n"),
        clean="was processed successfully",
        noise=r"^(Mounting volume\.\.\. OK|Processing of \$MFT and \$MFTMirr completed"
        r"|Checking the alternate boot sector\.\.\. OK|NTFS volume version)",
    ),
    # Boot sectors that differ from their backup are reported on exit 0. A dirty bit alone
    # (Windows sets it while the volume is mounted; a hibernated PC leaves it set) is not an
    # error of the filesystem's structure: judge() lets it and its byte in the boot sector pass.
    Checker(
        ("vfat",),
        ("fsck.fat", "-n"),
        unclean=("differences between boot sector and its backup",),
        noise=r"^(fsck\.fat \d|.*: \d+ files, \d+/\d+ clusters)",
    ),
    Checker(("exfat",), ("fsck.exfat", "-n"), noise=r"^(exfatprogs version|.*: clean\.)"),
)


def checker_for(fstype: str | None) -> Checker | None:
    for checker in CHECKERS:
        if fstype in checker.fstypes:
            return checker
    return None


@dataclass(frozen=True)
class CheckResult:
    tool: str  # "e2fsck -fn"
    result: str  # "passed" | "failed" | "skipped"
    seconds: float
    detail: str | None = None

    @property
    def passed(self) -> bool:
        return self.result == "passed"

    def to_json(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "result": self.result,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }


def judge(checker: Checker, returncode: int, output: str) -> tuple[bool, str | None]:
    """Whether a checker's run says the filesystem is clean, and its first findings if not."""
    clean = returncode == 0
    if "vfat" in checker.fstypes and returncode in (0, 1) and _fat_dirty_only(output):
        return True, None  # a dirty bit alone (fsck.fat -n says so with exit code 1)
    if checker.clean is not None and checker.clean not in output:
        clean = False
    if any(text in output for text in checker.unclean):
        clean = False
    if clean:
        return True, None
    noise = re.compile(checker.noise)
    findings = [
        line.strip() for line in output.splitlines() if line.strip() and not noise.match(line)
    ]
    detail = f"exit code {returncode}" + (f": {'; '.join(findings[:3])}" if findings else "")
    if len(detail) > DETAIL_CHARS:
        detail = detail[: DETAIL_CHARS - 3].rstrip() + "..."
    return False, detail


# fsck.fat's "offset:original/backup" lines; the dirty flag lives at byte 37 (FAT12/16) or
# 65 (FAT32) of the boot sector, so a dirty volume's boot sector differs from its backup there
_FAT_DIFF = re.compile(r"^\s*(\d+):[0-9a-f]{2}/[0-9a-f]{2}\s*$")
_FAT_DIRTY_BYTES = frozenset({37, 65})


def _fat_dirty_only(output: str) -> bool:
    """fsck.fat found only a dirty bit: its boot sectors differ in the dirty flag's byte."""
    offsets = [int(m.group(1)) for m in map(_FAT_DIFF.match, output.splitlines()) if m]
    return "Dirty bit is set" in output and bool(offsets) and set(offsets) <= _FAT_DIRTY_BYTES


def check(path: str, fstype: str | None, *, is_file: bool) -> CheckResult:
    """Run the read-only checker of `fstype` on `path` (a block device, or a regular file)."""
    checker = checker_for(fstype)
    started = time.monotonic()
    if checker is None:
        return CheckResult("-", "skipped", 0.0, f"no checker is known for {fstype or 'it'}")
    argv = [*checker.argv, *(checker.file_argv if is_file else ()), path]
    try:
        proc = run(argv, check=False, timeout=CHECK_TIMEOUT)
    except ToolMissing as exc:
        return CheckResult(checker.name, "skipped", 0.0, str(exc))
    except ToolFailed as exc:  # it did not finish in time
        return CheckResult(checker.name, "failed", time.monotonic() - started, str(exc))
    passed, detail = judge(checker, proc.returncode, proc.stdout + proc.stderr)
    return CheckResult(
        checker.name, "passed" if passed else "failed", time.monotonic() - started, detail
    )

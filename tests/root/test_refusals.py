"""Every refusal: one sentence, a fixed exit code, and the target's bytes untouched."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.cli import appliance, file_digest, refused
from kit.diskbuild import GPT_DISK_SIZE, MiB, sparse_file
from kit.diskcompare import mounted
from kit.loops import Loops
from kit.saved import saved_gpt_disk

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Loops, str, Path]]:
    with saved_gpt_disk(tmp_path_factory.mktemp("refusals")) as saved:
        yield saved.loops, saved.source, saved.repo


def restore_refused(
    repo: Path, target: str, target_file: Path, code: int, words: str, *extra: str
) -> str:
    before = file_digest(target_file)
    proc = appliance("restore", "--repo", str(repo), "--image", "base", target, *extra, check=False)
    sentence = refused(proc, code, words)
    assert file_digest(target_file) == before, "a refused restore wrote to the target"
    return sentence


def partitioned_target(
    loops: Loops, tmp_path: Path, size: int = GPT_DISK_SIZE, sector: int = 512
) -> tuple[str, Path]:
    path = sparse_file(tmp_path, "target.img", size)
    node = loops.attach(path, sector_size=sector)
    subprocess.run(
        ["sfdisk", "-q", node], input="label: gpt\nsize=64MiB\nsize=64MiB\n", text=True, check=True
    )
    subprocess.run(["partx", "-u", node], check=False)
    subprocess.run(["mkfs.ext4", "-q", f"{node}p1"], check=True)
    subprocess.run(["mkswap", f"{node}p2"], check=True, capture_output=True)
    return node, path


def test_target_too_small(saved: tuple[Loops, str, Path], tmp_path: Path) -> None:
    """Smaller targets are fine while the data fits (tests/root/test_fit.py); not this one."""
    loops, source, repo = saved
    node, path = partitioned_target(loops, tmp_path, size=150 * MiB)
    restore_refused(repo, node, path, 5, "does not fit", "--yes")


def test_target_with_other_sector_size(saved: tuple[Loops, str, Path], tmp_path: Path) -> None:
    loops, source, repo = saved
    node, path = partitioned_target(loops, tmp_path, size=2 * GPT_DISK_SIZE, sector=4096)
    restore_refused(repo, node, path, 5, "4096-byte sectors", "--yes")


def test_target_with_mounted_partition(saved: tuple[Loops, str, Path], tmp_path: Path) -> None:
    loops, source, repo = saved
    node, path = partitioned_target(loops, tmp_path)
    with mounted(f"{node}p1", "ext4", readonly=True, mountpoint=loops.mountpoint("t")):
        restore_refused(repo, node, path, 5, "mounted at", "--yes")


@pytest.mark.parametrize("owner", ["gone", "running"])
def test_a_grow_mount_left_by_a_killed_restore(
    saved: tuple[Loops, str, Path], tmp_path: Path, owner: str
) -> None:
    """A restore killed while it grew an xfs or btrfs leaves the target's partition mounted
    at /run/appliance-grow-PID-*: with that process gone the next restore ends the mount and
    goes on; while it runs, the mount is its own and the restore is refused."""
    loops, _, repo = saved
    node, path = partitioned_target(loops, tmp_path)
    process = subprocess.Popen(["sleep", "60"])
    if owner == "gone":
        process.kill()  # killed and reaped by wait(); a zombie would count as gone too
        process.wait()
    point = Path(f"/run/appliance-grow-{process.pid}-test")
    point.mkdir()
    subprocess.run(["mount", "-o", "ro", f"{node}p1", str(point)], check=True)
    try:
        if owner == "gone":
            appliance("restore", "--repo", str(repo), "--image", "base", node, "--yes")
            assert not point.exists()
            assert str(point) not in Path("/proc/self/mountinfo").read_text()
        else:
            restore_refused(repo, node, path, 5, f"mounted at {point}", "--yes")
            assert point.is_mount()
    finally:
        subprocess.run(["umount", str(point)], check=False, capture_output=True)
        if point.exists():
            point.rmdir()
        process.kill()
        process.wait()


def digest_but(path: Path, skip: tuple[int, int]) -> str:
    """sha256 of the file with the (offset, length) range left out."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(skip[0]))
        handle.seek(skip[0] + skip[1])
        while block := handle.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def test_target_with_active_swap(saved: tuple[Loops, str, Path], tmp_path: Path) -> None:
    loops, source, repo = saved
    node, path = partitioned_target(loops, tmp_path)
    if subprocess.run(["swapon", f"{node}p2"], capture_output=True).returncode != 0:
        pytest.skip("this kernel or sandbox cannot enable swap")
    # While the swap is active the kernel itself may page out to it (a busy machine whose
    # memory is all page cache does): everything but the pages after its header must stay.
    start = int(Path(f"/sys/class/block/{Path(node).name}p2/start").read_text()) * 512
    pages = (start + 4096, 64 * MiB - 4096)
    try:
        before = digest_but(path, pages)
        proc = appliance(
            "restore", "--repo", str(repo), "--image", "base", node, "--yes", check=False
        )
        refused(proc, 5, "swap")
        assert digest_but(path, pages) == before, "a refused restore wrote to the target"
    finally:
        subprocess.run(["swapoff", f"{node}p2"], check=False)


def test_target_holding_the_repository(saved: tuple[Loops, str, Path], tmp_path: Path) -> None:
    loops, source, repo = saved
    node, path = partitioned_target(loops, tmp_path)
    where = loops.mountpoint("repo-disk")
    subprocess.run(["mount", f"{node}p1", str(where)], check=True)
    try:
        subprocess.run(["cp", "-a", str(repo), str(where / "repo")], check=True)
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        before = file_digest(path)
        proc = appliance(
            "restore", "--repo", str(where / "repo"), "--image", "base", node, "--yes", check=False
        )
        refused(proc, 5, "holds the repository")
        assert file_digest(path) == before
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_restore_without_yes_and_no_terminal(
    saved: tuple[Loops, str, Path], tmp_path: Path
) -> None:
    loops, source, repo = saved
    node, path = partitioned_target(loops, tmp_path)
    restore_refused(repo, node, path, 5, "add --yes")


def _typed(repo: Path, node: str, answer: str) -> subprocess.CompletedProcess[str]:
    """Run restore in a pseudo-terminal (script(1)) and type `answer` at its question."""
    command = (
        f"{sys.executable} -m appliance.cli restore --repo {repo} --image base {node}"
        " --progress none"
    )
    return subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        input=answer + "\n",
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_typed_confirmation(saved: tuple[Loops, str, Path], tmp_path: Path) -> None:
    loops, source, repo = saved
    node, path = partitioned_target(loops, tmp_path)
    before = file_digest(path)
    for wrong in ["", "y", "yes", node, Path(node).name + "x"]:
        proc = _typed(repo, node, wrong)
        assert proc.returncode == 5 and "Nothing was written" in proc.stdout, proc.stdout
    assert file_digest(path) == before
    proc = _typed(repo, node, Path(node).name)
    assert proc.returncode == 0, proc.stdout
    assert "will be ERASED" in proc.stdout and "Restored image base" in proc.stdout


def test_save_with_repository_on_its_source(saved: tuple[Loops, str, Path], tmp_path: Path) -> None:
    loops, source, repo = saved
    node, path = partitioned_target(loops, tmp_path)
    where = loops.mountpoint("src-repo")
    subprocess.run(["mount", f"{node}p1", str(where)], check=True)
    try:
        proc = appliance(
            "save", node, "--repo", str(where / "images"), "--image", "x", "--create", check=False
        )
        # the partition is mounted read-write and holds the repository: either rule refuses
        refused(proc, 5, "source")
        assert not (where / "images").exists()
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.mark.parametrize(
    "name, code, words",
    [
        ("/dev/nonexistent", 4, "no disk called"),
        ("/etc/passwd", 4, "not a disk"),
    ],
)
def test_bad_disk_names(saved: tuple[Loops, str, Path], name: str, code: int, words: str) -> None:
    loops, source, repo = saved
    proc = appliance("restore", "--repo", str(repo), "--image", "base", name, "--yes", check=False)
    refused(proc, code, words)


def test_partition_instead_of_disk(saved: tuple[Loops, str, Path]) -> None:
    loops, source, repo = saved
    proc = appliance(
        "restore", "--repo", str(repo), "--image", "base", f"{source}p2", "--yes", check=False
    )
    refused(proc, 4, "is a partition, not a whole disk")

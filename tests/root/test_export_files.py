"""export and save --to on real disks: the file each makes is compared with the source disk
by tools that are not ours (qemu-img compare, zstd -d, a byte compare, the disk oracle of
kit.diskcompare on the exported file attached as a loop device)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit.cli import appliance, file_digest, refused, result_json
from kit.diskbuild import build_gpt_disk
from kit.diskcompare import assert_equivalent, device_size, mounted, partition_nodes, run
from kit.loops import Loops
from kit.plaindisk import allocated_bytes, build_plain_disk, qemu_compare, sha256_of

pytestmark = pytest.mark.root


@dataclass(frozen=True)
class Plain:
    source: str  # the plain disk's loop device
    source_file: Path
    repo: Path
    image: str
    folder: Path


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plain]:
    folder = tmp_path_factory.mktemp("export")
    loops = Loops(folder)
    try:
        source = build_plain_disk(loops, folder / "source.img")
        repo = folder / "repo"
        appliance("save", source, "--repo", str(repo), "--image", "plain", "--create")
        yield Plain(source, folder / "source.img", repo, "plain", folder)
    finally:
        loops.cleanup()


def export(
    plain: Plain, name: str, *extra: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    out = plain.folder / "out"
    out.mkdir(exist_ok=True)
    return appliance(
        "export", "--repo", str(plain.repo), "--image", plain.image, str(out / name), *extra,
        check=check,
    )  # fmt: skip


@pytest.mark.parametrize(
    "name,fmt",
    [("vm.qcow2", "qcow2"), ("vm.vhdx", "vhdx"), ("vm.vmdk", "vmdk"), ("vm.vhd", "vpc"),
     ("vm.vdi", "vdi")],
)  # fmt: skip
def test_export_to_a_vm_disk_equals_the_source(plain: Plain, name: str, fmt: str) -> None:
    proc = export(plain, name, "--json")
    result = result_json(proc)
    file = plain.folder / "out" / name
    assert result["format"] == fmt and result["file"] == str(file)
    compared = qemu_compare(plain.source, file, fmt)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    if fmt in ("qcow2", "vhdx", "vdi"):  # the formats qemu-img can check
        run("qemu-img", "check", "-f", fmt, str(file))
    assert not (plain.folder / "out" / f"{name}.part").exists()
    # a VM disk stores the used data, not the disk's size
    assert allocated_bytes(file) < device_size(plain.source) // 2


def test_export_to_img_is_the_disk_byte_for_byte_and_sparse(plain: Plain) -> None:
    export(plain, "disk.img")
    file = plain.folder / "out" / "disk.img"
    assert os.path.getsize(file) == device_size(plain.source)
    assert sha256_of(file) == sha256_of(plain.source)
    used = sum(int(i["used_bytes"]) for i in result_json(
        appliance("images", "--repo", str(plain.repo), "--json"))["images"])  # fmt: skip
    assert allocated_bytes(file) <= used + 4 * 1024 * 1024


def test_export_to_img_zst_decompresses_to_the_disk(plain: Plain) -> None:
    export(plain, "disk.img.zst")
    file = plain.folder / "out" / "disk.img.zst"
    raw = plain.folder / "out" / "from-zst.img"
    run("zstd", "-q", "-d", "-f", str(file), "-o", str(raw))
    assert sha256_of(raw) == sha256_of(plain.source)
    assert os.path.getsize(file) < device_size(plain.source) // 4
    raw.unlink()


def test_export_refuses_an_existing_file_and_force_replaces_it(plain: Plain) -> None:
    target = plain.folder / "out" / "exists.img"
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(b"keep me")
    refused(export(plain, "exists.img", check=False), 5, "exists; add --force")
    assert target.read_bytes() == b"keep me"
    export(plain, "exists.img", "--force")
    assert sha256_of(target) == sha256_of(plain.source)


def test_export_refuses_a_bad_name_and_a_missing_folder(plain: Plain) -> None:
    refused(export(plain, "disk.iso", check=False), 2, "must end with one of")
    refused(export(plain, "no-such-folder/disk.img", check=False), 2, "does not exist")


def test_export_refuses_a_folder_without_room_before_writing(plain: Plain) -> None:
    small = plain.folder / "small"
    small.mkdir()
    run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small))
    try:
        proc = export(plain, "../small/disk.qcow2", check=False)
        refused(proc, 5, "in memory (tmpfs)")
        proc = export(plain, "../small/disk.qcow2", "--allow-ram", check=False)
        refused(proc, 5, "free some space")
        assert list(small.iterdir()) == []
    finally:
        run("umount", str(small))


def test_save_to_img_zst_decompresses_to_the_disk(plain: Plain) -> None:
    before = file_digest(plain.source_file)
    out = plain.folder / "saved"
    out.mkdir()
    proc = appliance("save", plain.source, "--to", str(out / "disk.img.zst"), "--json")
    assert result_json(proc)["format"] == "zst"
    assert file_digest(plain.source_file) == before, "save --to wrote to its source"
    run("zstd", "-q", "-d", "-f", str(out / "disk.img.zst"), "-o", str(out / "disk.img"))
    assert sha256_of(out / "disk.img") == sha256_of(plain.source)
    assert not list(out.glob("*.part"))


def test_save_to_img_is_the_disk_and_sparse(plain: Plain) -> None:
    out = plain.folder / "saved-img"
    out.mkdir()
    appliance("save", plain.source, "--to", str(out / "disk.img"))
    assert sha256_of(out / "disk.img") == sha256_of(plain.source)
    assert allocated_bytes(out / "disk.img") < device_size(plain.source) // 2
    proc = appliance("save", plain.source, "--to", str(out / "disk.img"), check=False)
    refused(proc, 5, "exists; add --force")


def test_save_command_line_mixes_are_refused(plain: Plain) -> None:
    proc = appliance("save", plain.source, check=False)
    refused(proc, 2, "--repo DIR and --image NAME are required, or --to FILE")
    proc = appliance(
        "save", plain.source, "--to", str(plain.folder / "x.img"), "--repo", str(plain.repo),
        "--image", "x", check=False,
    )  # fmt: skip
    refused(proc, 2, "not both")


def test_exported_img_of_a_full_gpt_disk_is_an_equivalent_disk(
    tmp_path: Path, loops: Loops
) -> None:
    """The FAT32/ext4/NTFS/swap disk with stale bytes in its free space: the exported file,
    attached as a disk, passes the oracle that restored disks pass (tables, fsck,
    identities, file trees, boot code and gap)."""
    source = build_gpt_disk(loops, tmp_path / "gpt.img")
    repo = tmp_path / "repo"
    appliance("save", source, "--repo", str(repo), "--image", "gpt", "--create")
    file = tmp_path / "exported.img"
    appliance("export", "--repo", str(repo), "--image", "gpt", str(file))
    exported = loops.attach(file, read_only=True)
    assert_equivalent(source, exported, same_size=True)


def test_save_to_refuses_a_mounted_source_and_a_file_on_it(tmp_path: Path, loops: Loops) -> None:
    source = build_plain_disk(loops, tmp_path / "disk.img")  # mounting changes a disk: its own
    root = partition_nodes(source)[2]
    with mounted(root, "ext4", readonly=False):
        proc = appliance("save", source, "--to", str(tmp_path / "m.img"), check=False)
        refused(proc, 5, "mounted read-write")
    with mounted(root, "ext4", readonly=True) as mp:
        proc = appliance("save", source, "--to", str(mp / "self.img"), check=False)
        refused(proc, 5, "the disk being saved")
    assert not list(tmp_path.glob("m.img*"))

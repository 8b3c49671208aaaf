"""fsfiles on captured output of dumpe2fs, debugfs and ntfscluster (e2fsprogs 1.47, ntfs-3g
2022.10)."""

import pytest

from appliance.fs import files as fsfiles

DUMPE2FS = (
    "Block count:              204800\nFree blocks:              184667\n"
    "Block size:               1024\n"
)
ICHECK = "Block\tInode number\n9989\t16\n260\t<block not found>\n9990\t16\n"
NCHECK = "Inode\tPathname\n16\t//readme.txt\n"
NTFS_INFO = (
    "bytes per sector        : 512\nbytes per volume        : 104853504\n"
    "bytes of free space     : 99241984\n"
)
NTFS_HITS = (
    "Inode 0 /$MFT/$DATA\nInode 65 /dir/file.bin/$DATA\n"
    "Inode 66 /dir/with space.txt/$DATA\n* 3 inodes found\n"
)


def fake(outputs: dict[str, str]):  # type: ignore[no-untyped-def]
    def tool(args: list[str]) -> str:
        for key, text in outputs.items():
            if key in " ".join(args):
                return text
        return ""

    return tool


def test_ext_used_bytes_and_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        fsfiles, "_tool", fake({"dumpe2fs": DUMPE2FS, "icheck": ICHECK, "ncheck": NCHECK})
    )
    assert fsfiles.used_bytes("/dev/x", "ext4") == (204800 - 184667) * 1024
    assert fsfiles.files_at("/dev/x", "ext4", [(9989 * 1024, 2048)]) == [
        "filesystem metadata",
        "/readme.txt",
    ]


def test_ntfs_used_bytes_and_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fsfiles, "_tool", fake({"-i": NTFS_INFO, "-s": NTFS_HITS}))
    assert fsfiles.used_bytes("/dev/x", "ntfs") == 104853504 - 99241984
    assert fsfiles.files_at("/dev/x", "ntfs", [(0, 4096)]) == [
        "filesystem metadata",
        "/dir/file.bin",
        "/dir/with space.txt",
    ]


def test_other_filesystems_or_failed_tools_say_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fsfiles, "_tool", fake({}))
    assert fsfiles.used_bytes("/dev/x", "ext4") is None
    assert fsfiles.files_at("/dev/x", "ntfs", [(0, 512)]) == []
    assert fsfiles.files_at("/dev/x", "xfs", [(0, 512)]) == []
    assert fsfiles.used_bytes("", "ext4") is None

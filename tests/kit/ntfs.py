"""Make an NTFS volume dirty, as Windows leaves it after a crash or with chkdsk scheduled."""

from __future__ import annotations

from appliance.fs.ntfs import NTFS_DIRTY, read_volume_info


def set_dirty(node: str) -> None:
    """Set the dirty flag where Windows does: in $Volume and in its copy in $MFTMirr."""
    info = read_volume_info(node)
    with open(node, "r+b") as device:
        boot = device.read(512)
        cluster = int.from_bytes(boot[0x0B:0x0D], "little") * boot[0x0D]
        mft = int.from_bytes(boot[0x30:0x38], "little") * cluster
        mirror = int.from_bytes(boot[0x38:0x40], "little") * cluster
        value = (info.flags | NTFS_DIRTY).to_bytes(2, "little")
        for base in (mft, mirror):
            device.seek(base + info.flags_offset - mft)
            device.write(value)

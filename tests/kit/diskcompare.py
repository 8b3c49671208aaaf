"""Independent oracles that compare two real disks (loop devices) with real tools.

Nothing here imports the appliance package: every answer comes from sfdisk, sgdisk,
blkid, the filesystems' own checkers and the kernel's (or FUSE's, or mtools')
view of the files. The functions are used to prove that a restored disk equals its
source.

Read-only mounting, as found on this machine (kernel 6.18):
- ext2/3/4: ``-o ro,noload`` (``noload`` = no journal replay, so nothing is written);
- xfs: ``-o ro,norecovery,nouuid`` (``nouuid`` lets a raw copy be mounted while the
  source is known to the kernel);
- btrfs: ``-o ro,rescue=nologreplay``;
- ntfs: ``ntfs-3g -o ro`` (FUSE), run with ``no_detach`` so that its exit can be awaited;
- vfat: no kernel driver here; mtools (``mattrib -/``, ``mcopy -s``) read the tree instead.

Read-only checkers and how their verdict is read:
- vfat: ``fsck.fat -n``; exit 0 even when the boot sector and its backup differ, so
  that message (and "Dirty bit") counts as unclean too;
- ext*: ``e2fsck -f -n``; exit 0 even when the journal needs replaying ("skipping
  journal recovery"), so that counts as unclean too;
- ntfs: ``ntfsfix -n`` (checks $MFT/$MFTMirr and the backup boot sector);
- xfs: ``xfs_repair -n`` (exit 1 also for a dirty log);
- btrfs: ``btrfs check --readonly --check-data-csum`` (data checksums too);
- swap: blkid says swap and the SWAPSPACE2 signature is in place.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

BLKFLSBUF = 0x1261  # ioctl: write back and drop a block device's page cache

#: filesystems whose files file_tree() can list
TREE_TYPES = frozenset({"vfat", "ext2", "ext3", "ext4", "xfs", "btrfs", "ntfs"})

#: blkid keys that name the device rather than describe its content
_NODE_KEYS = frozenset({"DEVNAME", "PART_ENTRY_DISK"})
#: blkid keys that depend on a partition's size
_SIZE_KEYS = frozenset({"PART_ENTRY_SIZE", "FSSIZE", "FSLASTBLOCK"})

#: mtools refuses partitions whose geometry looks odd unless told not to check
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


# --------------------------------------------------------------------------- tools


class ToolError(subprocess.CalledProcessError):
    """A tool failed; str() includes its output."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stdout or ''}{self.stderr or ''}".rstrip()


def run(
    *args: str | os.PathLike[str],
    input: str | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a tool, capture its output; on failure raise ToolError with the tool's output."""
    argv = [os.fspath(a) for a in args]
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, check=False, env=env)
    if check and proc.returncode != 0:
        raise ToolError(proc.returncode, argv, proc.stdout, proc.stderr)
    return proc


def flush(node: str) -> None:
    """Write back and drop the page cache of a block device.

    The whole disk and each partition are separate block devices with separate caches;
    after writing through one, reading through another could see stale pages.
    """
    fd = os.open(node, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            fcntl.ioctl(fd, BLKFLSBUF, 0)
    finally:
        os.close(fd)


_libc = ctypes.CDLL(None, use_errno=True)


def syncfs(path: str | os.PathLike[str]) -> None:
    """syncfs(2): write back one filesystem only.

    A global sync() waits for every dirty page on the machine, which is slow while
    other jobs write big images.
    """
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), os.fspath(path))
    finally:
        os.close(fd)


def flush_all(node: str) -> None:
    """flush() a disk and each of its partitions: everything written reaches the image file."""
    flush(node)
    for part in partition_nodes(node).values():
        flush(part)


def read_bytes(node: str | os.PathLike[str], offset: int, length: int) -> bytes:
    """Read ``length`` bytes at ``offset`` of a device (or file), past any stale cache."""
    path = os.fspath(node)
    if path.startswith("/dev/"):
        flush(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        out = bytearray()
        while len(out) < length:
            chunk = os.pread(fd, length - len(out), offset + len(out))
            if not chunk:
                raise AssertionError(f"{path}: short read at {offset + len(out)}")
            out += chunk
        return bytes(out)
    finally:
        os.close(fd)


def device_size(node: str) -> int:
    """Size in bytes of a block device."""
    return int(run("blockdev", "--getsize64", node).stdout)


def sector_size(node: str) -> int:
    """Logical sector size of a block device."""
    return int(run("blockdev", "--getss", node).stdout)


def rescan(node: str) -> None:
    """Make the kernel's partitions of ``node`` match its table (no parser in this kernel).

    ``partx -u`` alone misses logical partitions when numbers 3-4 are unused, so
    missing ones are added with ``partx -a`` and ones not in the table removed.
    With no readable table every partition is removed.
    """
    flush(node)
    proc = run("sfdisk", "--json", node, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        run("partx", "-d", node, check=False)
        return
    wanted = {
        _part_number(p["node"])
        for p in json.loads(proc.stdout)["partitiontable"].get("partitions", [])
    }
    run("partx", "-u", node, check=False)
    have = {
        int((d / "partition").read_text())
        for d in Path("/sys/block", Path(node).name).iterdir()
        if (d / "partition").is_file()
    }
    for num in sorted(have - wanted):
        run("partx", "-d", "--nr", str(num), node, check=False)
    if wanted - have:
        run("partx", "-a", node, check=False)


# --------------------------------------------------------------------------- table


def _raw_table(node: str) -> tuple[dict[str, Any], str]:
    """sfdisk's JSON of the table and its warnings; AssertionError if there is no table."""
    flush(node)
    proc = run("sfdisk", "--json", node, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise AssertionError(f"{node}: no partition table sfdisk can read: {proc.stderr.strip()}")
    return json.loads(proc.stdout)["partitiontable"], proc.stderr


def _part_number(part_node: str) -> int:
    m = re.search(r"(\d+)$", part_node)
    if m is None:
        raise AssertionError(f"cannot tell the partition number of {part_node}")
    return int(m.group(1))


def table(node: str, *, ignore_size: bool = False) -> dict[str, Any]:
    """The partition table as data, without device names.

    ``{"label", "id", "unit", "sectorsize", "firstlba", "lastlba",
    "partitions": {number: {"start", "size", "type", "uuid", "name", "attrs",
    "bootable"}}}`` (keys present as sfdisk reports them). ``ignore_size`` drops what
    depends on the disk's size (``lastlba``), for comparing with a larger target.
    """
    raw, _ = _raw_table(node)
    out: dict[str, Any] = {k: v for k, v in raw.items() if k not in ("device", "partitions")}
    if ignore_size:
        out.pop("lastlba", None)
    parts: dict[int, dict[str, Any]] = {}
    for p in raw.get("partitions", []):
        parts[_part_number(p["node"])] = {k: v for k, v in p.items() if k != "node"}
    out["partitions"] = parts
    return out


def partition_nodes(node: str) -> dict[int, str]:
    """Partition number -> kernel node, after making the kernel's view match the table.

    Raises AssertionError if a node is missing or the kernel's start/size disagree
    with the table.
    """
    rescan(node)
    raw, _ = _raw_table(node)
    ss = int(raw.get("sectorsize", 512))
    out: dict[int, str] = {}
    for p in raw.get("partitions", []):
        num = _part_number(p["node"])
        part = p["node"]
        sysdir = Path("/sys/class/block") / Path(part).name
        if not sysdir.exists():
            raise AssertionError(f"{part}: no kernel partition node (partx -u {node} failed?)")
        start512 = int((sysdir / "start").read_text())
        size512 = int((sysdir / "size").read_text())
        is_ext = raw.get("label") == "dos" and p["type"].lower() in ("5", "f", "85")
        if start512 * 512 != p["start"] * ss or (not is_ext and size512 * 512 != p["size"] * ss):
            raise AssertionError(
                f"{part}: kernel has start {start512} size {size512} (512-byte units), "
                f"table has start {p['start']} size {p['size']} ({ss}-byte sectors)"
            )
        out[num] = part
    return out


def sgdisk_verify(node: str) -> None:
    """Assert ``sgdisk -v`` finds no problem and the GPT fits the whole device.

    sgdisk exits 0 even when it reports problems, so its text is read. sfdisk's
    warnings about the protective MBR size or the backup table not being at the end
    of the device count as problems too.
    """
    flush(node)
    proc = run("sgdisk", "-v", node, check=False)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0 or "No problems found" not in text or "Problem:" in text:
        raise AssertionError(f"sgdisk -v {node} reports problems:\n{text}")
    _, warnings = _raw_table(node)
    bad = [
        line
        for line in warnings.splitlines()
        if "PMBR size mismatch" in line or "not on the end of the device" in line
    ]
    if bad:
        raise AssertionError(f"sfdisk {node}: " + "; ".join(bad))


# --------------------------------------------------------------------------- identities


def blkid(part_node: str) -> dict[str, str]:
    """``blkid -p -o export`` of one device (low-level probe, no cache), node keys dropped."""
    flush(part_node)
    proc = run("blkid", "-p", "-o", "export", part_node, check=False)
    if proc.returncode not in (0, 2):  # 2: nothing recognised
        raise AssertionError(f"blkid -p {part_node} failed: {proc.stdout}{proc.stderr}")
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key not in _NODE_KEYS:
            out[key] = value
    return out


def identities(node: str) -> dict[int, dict[str, str]]:
    """Per partition number: TYPE, UUID, UUID_SUB, LABEL, VERSION, PART_ENTRY_* ..."""
    return {num: blkid(part) for num, part in partition_nodes(node).items()}


# --------------------------------------------------------------------------- fsck


def _swap_ok(part: str) -> str | None:
    page = os.sysconf("SC_PAGE_SIZE")
    sig = read_bytes(part, page - 10, 10)
    if sig != b"SWAPSPACE2":
        return f"swap signature at {page - 10} is {sig!r}, not SWAPSPACE2"
    return None


def fsck_part(part: str, fstype: str) -> None:
    """Run the read-only checker for ``fstype`` on ``part``; AssertionError if not clean."""
    flush(part)
    if fstype == "swap":
        problem = _swap_ok(part)
        if problem:
            raise AssertionError(f"{part}: {problem}")
        return
    argv: list[str]
    if fstype == "vfat":
        argv = ["fsck.fat", "-n", part]
    elif fstype in ("ext2", "ext3", "ext4"):
        argv = ["e2fsck", "-f", "-n", part]
    elif fstype == "ntfs":
        argv = ["ntfsfix", "-n", part]
    elif fstype == "xfs":
        argv = ["xfs_repair", "-n", part]
    elif fstype == "btrfs":
        argv = ["btrfs", "check", "--readonly", "--check-data-csum", part]
    elif fstype == "exfat":
        argv = ["fsck.exfat", "-n", part]
    else:
        raise AssertionError(f"{part}: no read-only checker known for {fstype!r}")
    proc = run(*argv, check=False)
    text = proc.stdout + proc.stderr
    bad = proc.returncode != 0
    if fstype == "ntfs" and "processed successfully" not in text:
        bad = True
    if fstype in ("ext2", "ext3", "ext4") and "skipping journal recovery" in text:
        bad = True  # e2fsck -n exits 0 on a journal that needs replaying
    if fstype == "vfat" and re.search(r"differences between boot sector|Dirty bit", text):
        bad = True
    if bad:
        raise AssertionError(f"{' '.join(argv)} exit {proc.returncode}:\n{text}")


def fsck_all(node: str) -> None:
    """Check every partition that blkid recognises with its read-only checker.

    Raises one AssertionError naming every partition that is not clean, with the
    checkers' output.
    """
    problems: list[str] = []
    for num, part in partition_nodes(node).items():
        fstype = blkid(part).get("TYPE")
        if not fstype:
            continue  # extended partition, or raw data without a filesystem
        try:
            fsck_part(part, fstype)
        except AssertionError as e:
            problems.append(f"partition {num} ({fstype}): {e}")
    if problems:
        raise AssertionError("\n".join(problems))


# --------------------------------------------------------------------------- files


class Entry(NamedTuple):
    """One file in a tree: kind, permission bits (FAT: attribute bits), size (None for
    directories), sha256 hex (files) or target (symlinks)."""

    kind: str
    mode: int | None
    size: int | None
    digest: str | None


def _kind(st: os.stat_result) -> str:
    m = st.st_mode
    if stat.S_ISDIR(m):
        return "dir"
    if stat.S_ISREG(m):
        return "file"
    if stat.S_ISLNK(m):
        return "symlink"
    if stat.S_ISFIFO(m):
        return "fifo"
    if stat.S_ISSOCK(m):
        return "socket"
    if stat.S_ISCHR(m):
        return "chardev"
    if stat.S_ISBLK(m):
        return "blockdev"
    return "unknown"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def walk_tree(root: Path, *, with_mode: bool = True) -> dict[str, Entry]:
    """path (relative, "." for the root) -> Entry, for the tree below ``root``."""
    out: dict[str, Entry] = {}

    def add(path: str, rel: str) -> None:
        st = os.lstat(path)
        kind = _kind(st)
        mode = stat.S_IMODE(st.st_mode) if with_mode else None
        if kind == "file":
            out[rel] = Entry(kind, mode, st.st_size, _sha256(path))
        elif kind == "symlink":
            target = os.readlink(path)
            out[rel] = Entry(kind, mode, len(os.fsencode(target)), target)
        elif kind in ("chardev", "blockdev"):
            out[rel] = Entry(kind, mode, None, f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
        else:
            out[rel] = Entry(kind, mode, None, None)

    def fail(err: OSError) -> None:
        raise err

    add(str(root), ".")
    for dirpath, dirnames, filenames in os.walk(root, onerror=fail):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            add(full, os.path.relpath(full, root))
    return out


def _mounted_paths() -> dict[str, str]:
    """mountpoint -> source, from /proc/self/mountinfo."""
    out: dict[str, str] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        mountpoint = fields[4].encode().decode("unicode_escape")
        out[mountpoint] = fields[sep + 2]
    return out


def umount(mountpoint: str | os.PathLike[str]) -> None:
    """Unmount, retrying while busy, lazily as a last resort."""
    mp = os.fspath(mountpoint)
    last = ""
    for _ in range(50):
        proc = run("umount", mp, check=False)
        if proc.returncode == 0 or mp not in _mounted_paths():
            return
        last = proc.stderr
        time.sleep(0.1)
    run("umount", "-l", mp, check=False)
    raise AssertionError(f"umount {mp} failed (lazily detached): {last}")


MOUNT_OPTIONS_RO = {
    "ext2": "ro,noload",
    "ext3": "ro,noload",
    "ext4": "ro,noload",
    "xfs": "ro,norecovery,nouuid",
    "btrfs": "ro,rescue=nologreplay",
}
#: btrfs discards freed extents by default (discard=async) on loop devices; keep stale bytes
MOUNT_OPTIONS_RW = {"ext2": "", "ext3": "", "ext4": "", "xfs": "nouuid", "btrfs": "nodiscard"}


def _ntfs3g_start(part: str, mp: Path, readonly: bool, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start ntfs-3g in the foreground (``no_detach``) and wait for the mount.

    Staying our child, its exit (after the last write reached the device) can be
    awaited after umount.
    """
    opts = ("ro," if readonly else "") + "no_detach"
    proc = subprocess.Popen(
        ["ntfs-3g", "-o", opts, part, str(mp)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while str(mp) not in _mounted_paths():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            log.seek(0)
            raise AssertionError(
                f"ntfs-3g {part} did not mount: {log.read().decode(errors='replace')}"
            )
        time.sleep(0.02)
    return proc


@contextlib.contextmanager
def mounted(
    part: str,
    fstype: str,
    *,
    readonly: bool = True,
    mountpoint: str | os.PathLike[str] | None = None,
) -> Iterator[Path]:
    """Mount ``part`` (ext*, xfs, btrfs, ntfs) and yield the mountpoint; always unmounts.

    Without ``mountpoint`` a temporary directory is made and removed afterwards.
    """
    made = mountpoint is None
    mp = Path(tempfile.mkdtemp(prefix="dc-mnt-")) if mountpoint is None else Path(mountpoint)
    mp.mkdir(parents=True, exist_ok=True)
    mp = mp.resolve()  # as /proc/self/mountinfo shows it
    ntfs_proc: subprocess.Popen[bytes] | None = None
    try:
        with tempfile.TemporaryFile() as log:
            flush(part)
            if fstype == "ntfs":
                ntfs_proc = _ntfs3g_start(part, mp, readonly, log)
            elif fstype in MOUNT_OPTIONS_RO:
                opts = MOUNT_OPTIONS_RO[fstype] if readonly else MOUNT_OPTIONS_RW[fstype]
                argv = ["mount", "-t", fstype]
                if opts:
                    argv += ["-o", opts]
                proc = run(*argv, part, mp, check=False)
                if proc.returncode != 0:
                    raise AssertionError(f"{' '.join(argv)} {part} {mp}: {proc.stderr}")
            else:
                raise AssertionError(f"{part}: cannot mount {fstype!r} here")
            try:
                yield mp
            finally:
                if not readonly:
                    syncfs(mp)
                if str(mp) in _mounted_paths():
                    umount(mp)
                if ntfs_proc is not None:
                    try:
                        ntfs_proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        ntfs_proc.kill()
                        ntfs_proc.wait()
    finally:
        if made:
            with contextlib.suppress(OSError):
                mp.rmdir()


FAT_ATTRS = {"R": 0x01, "H": 0x02, "S": 0x04, "A": 0x20}


def _fat_tree(part: str) -> dict[str, Entry]:
    """FAT via mtools: ``mattrib -/`` lists every entry with its attributes (kept as the
    mode: R=1 H=2 S=4 A=0x20), ``mcopy -s`` copies the files out to hash them."""
    flush(part)
    listing = run("mattrib", "-/", "-i", part, "::/", env=MTOOLS_ENV, check=False)
    attrs: dict[str, int] = {}
    for line in listing.stdout.splitlines():
        left, sep, rest = line.partition("::/")
        if sep:
            attrs[rest.rstrip("/") or "."] = sum(FAT_ATTRS.get(c, 0) for c in left)
    if "." not in attrs:
        raise AssertionError(f"mattrib {part}: {listing.stdout}{listing.stderr}")
    tmp = Path(tempfile.mkdtemp(prefix="dc-fat-"))
    try:
        if len(attrs) > 1:
            run("mcopy", "-s", "-n", "-i", part, "::/*", str(tmp) + "/", env=MTOOLS_ENV)
        tree = walk_tree(tmp, with_mode=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if set(tree) != set(attrs):
        raise AssertionError(
            f"{part}: mcopy copied {sorted(set(tree) - set(attrs))} extra and missed "
            f"{sorted(set(attrs) - set(tree))}"
        )
    return {rel: entry._replace(mode=attrs[rel]) for rel, entry in tree.items()}


def file_tree(part_node: str, fstype: str) -> dict[str, Entry]:
    """path -> Entry(kind, mode, size, sha256 hex or symlink target) of a filesystem.

    Mounted read-only without journal replay (see the module docstring); FAT is read
    with mtools and its "mode" is the FAT attribute bits. Directory sizes are fs
    internals and not recorded.
    """
    if fstype == "vfat":
        return _fat_tree(part_node)
    with mounted(part_node, fstype, readonly=True) as mp:
        return walk_tree(mp)


# --------------------------------------------------------------------------- raw areas


def ntfs_backup_boot_sector(part_node: str) -> bytes:
    """The last sector of the partition (where NTFS keeps its backup boot sector)."""
    ss = sector_size(part_node)
    return read_bytes(part_node, device_size(part_node) - ss, ss)


def _gpt_table_end(node: str, ss: int) -> int:
    """Byte offset just past the primary GPT's partition entries."""
    hdr = read_bytes(node, ss, 92)
    if hdr[:8] != b"EFI PART":
        raise AssertionError(f"{node}: no GPT header at LBA 1")
    entries_lba = int.from_bytes(hdr[72:80], "little")
    n_entries = int.from_bytes(hdr[80:84], "little")
    entry_size = int.from_bytes(hdr[84:88], "little")
    entry_sectors = -(-n_entries * entry_size // ss)
    return (entries_lba + entry_sectors) * ss


def gap_bytes(node: str) -> bytes:
    """Bytes between the end of the partition table and the first partition.

    GPT: from past the primary entries (usually LBA 34) to the first partition;
    DOS: from LBA 1 (after the MBR) to the first partition. Where GRUB lives.
    """
    raw, _ = _raw_table(node)
    ss = int(raw.get("sectorsize", 512))
    starts = [p["start"] for p in raw.get("partitions", [])]
    if not starts:
        return b""
    begin = _gpt_table_end(node, ss) if raw["label"] == "gpt" else ss
    end = min(starts) * ss
    return read_bytes(node, begin, end - begin) if end > begin else b""


def boot_code(node: str) -> bytes:
    """Bytes 0..439 of the disk: the MBR's (or protective MBR's) boot code."""
    return read_bytes(node, 0, 440)


# --------------------------------------------------------------------------- compare


def _diff_dicts(what: str, a: dict[Any, Any], b: dict[Any, Any], limit: int = 20) -> list[str]:
    """Readable differences, nested dicts followed down: ``identity 2 LABEL: 'a' != 'b'``."""
    out: list[str] = []
    for k in sorted(set(a) | set(b), key=str):
        name = f"{what} {k if isinstance(k, int) else repr(k)}"
        if k not in b:
            out.append(f"{name}: only on source ({a[k]!r})")
        elif k not in a:
            out.append(f"{name}: only on target ({b[k]!r})")
        elif isinstance(a[k], dict) and isinstance(b[k], dict):
            out += _diff_dicts(name, a[k], b[k], limit)
        elif a[k] != b[k]:
            out.append(f"{name}: {a[k]!r} != {b[k]!r}")
        if len(out) >= limit:
            out = [*out[:limit], f"{what}: ... (more differences)"]
            break
    return out


def _first_diff(a: bytes, b: bytes) -> str:
    if len(a) != len(b):
        return f"lengths {len(a)} != {len(b)}"
    i = next(i for i in range(len(a)) if a[i] != b[i])
    return f"first difference at byte {i}: {a[i : i + 16].hex()} != {b[i : i + 16].hex()}"


def assert_equivalent(
    src_node: str,
    dst_node: str,
    same_size: bool = True,
    *,
    resized: Collection[int] = (),
    moved: Collection[int] = (),
) -> None:
    """Assert that ``dst_node`` is a faithful copy of ``src_node``.

    - table equal (``same_size=False``: all but lastlba, and the target may be larger;
      a GPT must then still verify clean, i.e. its backup header sits at the target's
      real end);
    - ``sgdisk -v`` clean on a GPT target; every filesystem's checker clean on the target;
    - blkid identities equal per partition (type, UUID, label, partition GUID ...);
    - file trees equal per partition (kind, mode, size, sha256 / symlink target);
    - NTFS backup boot sector, the gap after the table and the boot code (bytes 0..439,
      MBR or protective MBR) equal.

    ``resized``: partition numbers whose size may differ on the target (filesystem grown
    or shrunk to fit); for them the size is not compared, nor the NTFS backup boot
    sector, and the target disk may be smaller. ``moved``: partition numbers whose start
    may differ (they follow a resized partition). Raises one AssertionError listing every
    difference found.
    """
    problems: list[str] = []
    flush_all(src_node)
    flush_all(dst_node)

    src_size, dst_size = device_size(src_node), device_size(dst_node)
    if same_size and src_size != dst_size:
        problems.append(f"disk size: {src_size} != {dst_size}")
    elif dst_size < src_size and not resized:
        problems.append(f"target smaller: {dst_size} < {src_size}")
    if sector_size(src_node) != sector_size(dst_node):
        problems.append(f"sector size: {sector_size(src_node)} != {sector_size(dst_node)}")

    t_src = table(src_node, ignore_size=not same_size)
    t_dst = table(dst_node, ignore_size=not same_size)
    p_src: dict[int, dict[str, Any]] = t_src.pop("partitions")
    p_dst: dict[int, dict[str, Any]] = t_dst.pop("partitions")
    problems += _diff_dicts("table", t_src, t_dst)
    for num in resized:
        for parts in (p_src, p_dst):
            parts.get(num, {}).pop("size", None)
    for num in moved:
        for parts in (p_src, p_dst):
            parts.get(num, {}).pop("start", None)
    problems += _diff_dicts("partition", p_src, p_dst)

    label = t_dst.get("label")
    if label == "gpt":
        try:
            sgdisk_verify(dst_node)
        except AssertionError as e:
            problems.append(str(e))
    try:
        fsck_all(dst_node)
    except AssertionError as e:
        problems.append(f"fsck on target: {e}")

    id_src, id_dst = identities(src_node), identities(dst_node)
    for num in resized:
        for ids in (id_src, id_dst):
            for key in _SIZE_KEYS:
                ids.get(num, {}).pop(key, None)
    for num in moved:
        for ids in (id_src, id_dst):
            ids.get(num, {}).pop("PART_ENTRY_OFFSET", None)
    problems += _diff_dicts("identity", id_src, id_dst)

    src_parts, dst_parts = partition_nodes(src_node), partition_nodes(dst_node)
    for num, ident in sorted(id_src.items()):
        fstype = ident.get("TYPE", "")
        if num not in dst_parts or id_dst.get(num, {}).get("TYPE") != fstype:
            continue  # already reported
        if fstype in TREE_TYPES:
            try:
                tree_src = file_tree(src_parts[num], fstype)
                tree_dst = file_tree(dst_parts[num], fstype)
            except (AssertionError, OSError, subprocess.CalledProcessError) as e:
                problems.append(f"partition {num} ({fstype}) files unreadable: {e}")
            else:
                problems += _diff_dicts(f"partition {num} ({fstype}) file", tree_src, tree_dst)
        if fstype == "ntfs" and num not in resized:
            a = ntfs_backup_boot_sector(src_parts[num])
            b = ntfs_backup_boot_sector(dst_parts[num])
            if a != b:
                problems.append(f"partition {num} NTFS backup boot sector: {_first_diff(a, b)}")

    gap_src, gap_dst = gap_bytes(src_node), gap_bytes(dst_node)
    if gap_src != gap_dst:
        problems.append(f"gap after the table: {_first_diff(gap_src, gap_dst)}")
    bc_src, bc_dst = boot_code(src_node), boot_code(dst_node)
    if bc_src != bc_dst:
        problems.append(f"boot code (bytes 0..439): {_first_diff(bc_src, bc_dst)}")

    if problems:
        raise AssertionError(
            f"{dst_node} is not equivalent to {src_node}:\n  " + "\n  ".join(problems)
        )


def describe(node: str) -> str:
    """A human summary (lsblk-like) for failure messages."""
    return run("lsblk", "-o", "NAME,SIZE,FSTYPE,LABEL,UUID,PARTUUID", node, check=False).stdout


__all__: Sequence[str] = [
    "Entry",
    "ToolError",
    "assert_equivalent",
    "blkid",
    "boot_code",
    "device_size",
    "file_tree",
    "flush",
    "flush_all",
    "fsck_all",
    "fsck_part",
    "gap_bytes",
    "identities",
    "mounted",
    "ntfs_backup_boot_sector",
    "partition_nodes",
    "read_bytes",
    "rescan",
    "run",
    "sector_size",
    "sgdisk_verify",
    "syncfs",
    "table",
    "umount",
    "walk_tree",
]


def fiemap_windows(path: Path, window: int) -> set[int]:
    """The windows (of `window` bytes) of its partition that hold `path`'s data (filefrag's
    FIEMAP, in 512-byte units)."""
    out = subprocess.run(["filefrag", "-e", "-v", "-b512", str(path)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    found: set[int] = set()
    for line in out.splitlines():
        fields = line.replace(":", " ").replace("..", " ").split()
        if len(fields) >= 6 and fields[0].isdigit() and fields[3].isdigit():
            first, last = int(fields[3]) * 512, int(fields[4]) * 512 + 511
            found.update(range(first // window, last // window + 1))
    return found

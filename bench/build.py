"""The benchmark's disk images, built once and cached outside the repository.

A disk is a GPT with the partitions of a typical dual-use PC:
  1. a FAT32 EFI system partition (260 MiB): kernel, initrd and GRUB modules, a firmware blob;
  2. an ext4 root (48 % of the disk): a real Debian tree (debootstrap, with its downloaded
     .debs still in /var/cache/apt/archives) and a home folder;
  3. an NTFS data partition (the rest): documents, already-compressed files (.deb downloads,
     deflate archives) and random data (photos, an encrypted container).
About 40 % of the disk is used. On every filesystem files were written, synced and deleted,
so the free space holds stale bytes that an imager must not copy.

Images (all sparse files):
  base-4g     the disk every comparison runs on;
  changed-4g  base-4g plus about 60 MB of new files (documents, packages, photos), for the
              incremental save;
  big-8g      the same recipe on an 8 GiB disk, for the peak-RSS-as-the-disk-grows check.

The cache folder is keyed by the hash of this file: change the builder and the images are
rebuilt. The debootstrap tree is cached on its own (a tarball keyed by suite, mirror and
package list), so a builder change does not download Debian again. Without debootstrap or a
reachable mirror, the root holds a copy of part of this machine's /usr instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import zstandard

from bench.sh import MTOOLS_ENV, BenchError, Loops, log, mounted, partition_node, run

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

BUILDER_KEY = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]

ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_FS_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
MS_BASIC_DATA_TYPE = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"

DEBOOTSTRAP_INCLUDE = (
    "linux-image-amd64",
    "grub-efi-amd64-bin",
    "systemd-sysv",
    "openssh-server",
    "python3",
    "locales",
    "man-db",
    "less",
    "vim-tiny",
)
#: overall share of the disk in use, and how much of each filesystem's free space was
#: written and deleted again
TARGET_USED = 0.40
ROOT_USED = 0.45
STALE_SHARE = 0.25
#: what the incremental save adds (bytes), split over both filesystems and three kinds
CHANGE_BYTES = 60 * 1000 * 1000


@dataclass
class PartSpec:
    number: int
    fstype: str  # blkid name: vfat, ext4, ntfs
    label: str
    start: int  # bytes
    size: int  # bytes
    type_guid: str
    name: str


@dataclass
class DiskImage:
    """A built image and what is on it (the `.json` next to the image file)."""

    name: str
    path: Path
    size: int
    parts: list[PartSpec]
    content: dict[str, int] = field(default_factory=dict)  # kind -> bytes written
    build_seconds: float = 0.0
    rootfs: str = ""

    def to_json(self) -> str:
        data = asdict(self)
        data["path"] = str(self.path)
        return json.dumps(data, indent=2)

    @classmethod
    def load(cls, path: Path) -> DiskImage:
        data = json.loads(path.with_suffix(".json").read_text())
        data["path"] = Path(data["path"])
        data["parts"] = [PartSpec(**p) for p in data["parts"]]
        return cls(**data)


def layout(size: int) -> list[PartSpec]:
    esp_start, esp_size = 1 * MiB, 260 * MiB
    root_start = esp_start + esp_size
    root_size = int(size * 0.48) // MiB * MiB
    data_start = root_start + root_size
    data_size = (size - MiB - data_start) // MiB * MiB
    return [
        PartSpec(1, "vfat", "EFI", esp_start, esp_size, ESP_TYPE, "EFI system partition"),
        PartSpec(2, "ext4", "debian", root_start, root_size, LINUX_FS_TYPE, "debian root"),
        PartSpec(3, "ntfs", "Data", data_start, data_size, MS_BASIC_DATA_TYPE, "Data"),
    ]


def sfdisk_script(parts: list[PartSpec], seed: int) -> str:
    rng = random.Random(seed)
    lines = [
        "label: gpt",
        f"label-id: {uuid.UUID(int=rng.getrandbits(128), version=4)}",
        "first-lba: 2048",
        "",
    ]
    for p in parts:
        lines.append(
            f"start={p.start // 512}, size={p.size // 512}, type={p.type_guid}, "
            f'uuid={uuid.UUID(int=rng.getrandbits(128), version=4)}, name="{p.name}"'
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- content


class Content:
    """File contents: text documents cut from a corpus of real text, deflate-compressed
    archives of such text, and random bytes. Sizes come from a seeded generator."""

    def __init__(self, corpus: bytes, seed: int) -> None:
        if len(corpus) < MiB:
            raise BenchError("The text corpus for the documents is too small.")
        self.corpus = corpus
        self.rng = random.Random(seed)
        self.written: dict[str, int] = {}

    def text(self, size: int) -> bytes:
        parts: list[bytes] = []
        have = 0
        while have < size:
            piece = self.rng.randint(4 * KiB, 96 * KiB)
            start = self.rng.randrange(0, len(self.corpus) - piece)
            parts.append(self.corpus[start : start + piece])
            have += piece
        return b"".join(parts)[:size]

    def compressed(self, size: int) -> bytes:
        parts: list[bytes] = []
        have = 0
        while have < size:
            packed = zlib.compress(self.text(min(3 * (size - have) + 64 * KiB, 24 * MiB)), 1)
            parts.append(packed)
            have += len(packed)
        return b"".join(parts)[:size]

    def make(self, kind: str, size: int) -> bytes:
        if kind == "text":
            return self.text(size)
        if kind == "compressed":
            return self.compressed(size)
        return os.urandom(size)

    def size(self, small: int = 64 * KiB, large: int = 24 * MiB) -> int:
        """Log-uniform between `small` and `large`: many small files, a few large ones."""
        return int(small * (large / small) ** self.rng.random()) // 512 * 512 or 512

    def write(self, path: Path, kind: str, size: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            left = size
            while left > 0:
                step = min(left, 8 * MiB)
                handle.write(self.make(kind, step))
                left -= step
        self.written[kind] = self.written.get(kind, 0) + size

    def fill(
        self, root: Path, nbytes: int, mix: dict[str, tuple[str, float]], prefix: str = ""
    ) -> None:
        """Write about `nbytes` of files under `root`: mix maps a folder to (kind, weight)."""
        folders = list(mix)
        weights = [mix[f][1] for f in folders]
        done = 0
        number = 0
        while done < nbytes:
            folder = self.rng.choices(folders, weights)[0]
            kind = mix[folder][0]
            size = min(self.size(), nbytes - done + 4 * KiB)
            suffix = {"text": ".txt", "compressed": ".zip", "random": ".jpg"}[kind]
            self.write(root / folder / f"{prefix}{number:05d}{suffix}", kind, size)
            done += size
            number += 1


def zstd3_size(files: list[Path]) -> int:
    """What the files take compressed alone, in 4 MiB pieces at zstd level 3: the least any
    image can store for them."""
    cctx = zstandard.ZstdCompressor(level=3)
    total = 0
    for path in files:
        with open(path, "rb") as handle:
            while piece := handle.read(4 * MiB):
                total += min(len(piece), len(cctx.compress(piece)))
    return total


def used_bytes(mountpoint: Path) -> int:
    st = os.statvfs(mountpoint)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def stale(root: Path, content: Content, nbytes: int) -> None:
    """Write files, make them reach the disk, delete them: free space with old data in it."""
    folder = root / "stale-deleted"
    written = dict(content.written)
    content.fill(folder, nbytes, {"a": ("random", 0.5), "b": ("text", 0.5)}, prefix="old")
    os.sync()
    shutil.rmtree(folder)
    os.sync()
    content.written = written


def text_corpus(roots: list[Path], limit: int = 40 * MiB) -> bytes:
    """Real text (source code, documentation, configuration) from the given trees."""
    parts: list[bytes] = []
    have = 0
    suffixes = {".py", ".pm", ".txt", ".html", ".conf", ".md", ".rst", ".pl", ".sh", ".h", ""}
    for top in roots:
        if not top.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for fname in sorted(filenames):
                path = Path(dirpath) / fname
                if path.suffix not in suffixes or path.is_symlink():
                    continue
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                if not data or b"\0" in data[:4096]:
                    continue
                parts.append(data)
                have += len(data)
                if have >= limit:
                    return b"".join(parts)
    return b"".join(parts)


# ---------------------------------------------------------------------- debootstrap tree


def _suite() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "bookworm"
    found = re.search(r"^VERSION_CODENAME=(\w+)", text, re.M)
    return found.group(1) if found else "bookworm"


def apt_mirror() -> str:
    """The Debian mirror apt uses here (not the security archive)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for src in sources:
        try:
            text = src.read_text()
        except OSError:
            continue
        for found in re.finditer(r"^(?:deb\s+(?:\[[^]]*\]\s+)?|URIs:\s*)(\S+)", text, re.M):
            url = found.group(1).rstrip("/")
            if url.endswith("/debian"):
                return url
    return "http://deb.debian.org/debian"


def rootfs_tarball(cache: Path) -> tuple[Path, str]:
    """A tarball of a debootstrap'd Debian tree (cached), or of part of this machine's /usr."""
    suite, mirror = _suite(), apt_mirror()
    key = hashlib.sha256(f"{suite} {mirror} {DEBOOTSTRAP_INCLUDE}".encode()).hexdigest()[:10]
    tarball = cache / f"rootfs-debootstrap-{suite}-{key}.tar"
    if tarball.exists():
        return tarball, f"debootstrap {suite} from {mirror}"
    tree = cache / "rootfs-tmp"
    if tree.exists():
        shutil.rmtree(tree)
    if shutil.which("debootstrap"):
        log(f"debootstrap {suite} from {mirror} (once; about 2 minutes)")
        started = time.monotonic()
        include = ",".join(DEBOOTSTRAP_INCLUDE)
        proc = run(
            ["debootstrap", "--variant=minbase", f"--include={include}", suite, str(tree), mirror],
            check=False,
            timeout=1800,
        )
        if proc.returncode == 0:
            run(["tar", "-C", str(tree), "--numeric-owner", "-cf", f"{tarball}.tmp", "."])
            os.replace(f"{tarball}.tmp", tarball)
            shutil.rmtree(tree)
            log(f"debootstrap done in {time.monotonic() - started:.0f} s")
            return tarball, f"debootstrap {suite} from {mirror}"
        log(
            f"debootstrap failed ({proc.stderr.decode(errors='replace').strip()[-300:]}); "
            "using a copy of this machine's /usr instead"
        )
        shutil.rmtree(tree, ignore_errors=True)
    else:
        log(
            "debootstrap is not installed (apt-get install debootstrap); "
            "using a copy of this machine's /usr instead"
        )
    host = cache / "rootfs-host-usr.tar"
    if not host.exists():
        members: list[str] = []
        total = 0
        for top in (
            "usr/bin",
            "usr/sbin",
            "usr/lib/x86_64-linux-gnu",
            "usr/share/doc",
            "usr/lib/python3",
            "usr/share/locale",
            "usr/lib/modules",
        ):
            for dirpath, dirnames, filenames in os.walk(Path("/") / top):
                dirnames.sort()
                for fname in sorted(filenames):
                    path = Path(dirpath) / fname
                    if path.is_file() and not path.is_symlink():
                        total += path.stat().st_size
                        members.append(str(path.relative_to("/")))
                if total > 800 * MiB:
                    break
            if total > 800 * MiB:
                break
        listing = cache / "rootfs-host-usr.list"
        listing.write_text("\n".join(members) + "\n")
        run(["tar", "-C", "/", "--numeric-owner", "-cf", f"{host}.tmp", "-T", str(listing)])
        os.replace(f"{host}.tmp", host)
    return host, "a copy of this machine's /usr (no debootstrap)"


# ---------------------------------------------------------------------------- building


class Builder:
    def __init__(self, cache: Path, loops: Loops) -> None:
        self.cache = cache
        self.loops = loops
        self.folder = cache / f"disks-{BUILDER_KEY}"

    def images(self, big: bool) -> dict[str, DiskImage]:
        """The images the run needs, built if the cache does not hold them yet."""
        self.cache.mkdir(parents=True, exist_ok=True)
        for old in self.cache.glob("disks-*"):
            if old != self.folder and old.is_dir():
                log(f"removing images of an older builder: {old}")
                shutil.rmtree(old)
        self.folder.mkdir(exist_ok=True)
        wanted: dict[str, Callable[[], DiskImage]] = {
            "base-4g": lambda: self.build("base-4g", 4 * GiB, seed=4),
            "changed-4g": lambda: self.change(images["base-4g"], "changed-4g"),
        }
        if big:
            wanted["big-8g"] = lambda: self.build("big-8g", 8 * GiB, seed=8)
            wanted["changed-8g"] = lambda: self.change(images["big-8g"], "changed-8g")
        images: dict[str, DiskImage] = {}
        for name, make in wanted.items():
            path = self.folder / f"{name}.img"
            if path.exists() and path.with_suffix(".json").exists():
                images[name] = DiskImage.load(path)
            else:
                images[name] = make()
        return images

    def build(self, name: str, size: int, seed: int) -> DiskImage:
        started = time.monotonic()
        tarball, rootfs = rootfs_tarball(self.cache)
        log(f"building {name} ({size // GiB} GiB) in {self.folder}")
        path = self.folder / f"{name}.img"
        tmp = path.with_suffix(".img.tmp")
        with open(tmp, "wb") as handle:
            handle.truncate(size)
        parts = layout(size)
        image = DiskImage(name, path, size, parts, rootfs=rootfs)
        loop = self.loops.attach(tmp, direct_io=False)
        try:
            run(
                ["sfdisk", "--no-reread", "--no-tell-kernel", "-q", loop.node],
                stdin=sfdisk_script(parts, seed).encode(),
            )
            self.loops.rescan(loop)
            nodes = {p.number: partition_node(loop.node, p.number) for p in parts}
            esp, root, data = parts
            run(["mkfs.fat", "-F", "32", "-n", esp.label, nodes[1]])
            run(
                [
                    "mkfs.ext4",
                    "-q",
                    "-F",
                    "-L",
                    root.label,
                    "-E",
                    "lazy_itable_init=0,lazy_journal_init=0",
                    nodes[2],
                ]
            )
            run(["mkfs.ntfs", "-Q", "-F", "-q", "-L", data.label, nodes[3]])
            mnt = self.folder / f"mnt-{os.getpid()}"
            with (
                mounted(nodes[2], mnt / "root", "ext4") as rootdir,
                mounted(nodes[3], mnt / "data", "ntfs") as datadir,
            ):
                run(["tar", "-C", str(rootdir), "--numeric-owner", "-xpf", str(tarball)])
                corpus = text_corpus(
                    [
                        rootdir / "usr/share/doc",
                        rootdir / "usr/lib/python3",
                        rootdir / "usr/lib/python3.11",
                        rootdir / "usr/share/perl",
                        rootdir / "etc",
                        Path("/usr/lib/python3"),
                    ]
                )
                content = Content(corpus, seed)
                esp_used = self._esp(nodes[1], rootdir, content, esp.size)
                # root: the Debian tree plus a home folder up to ROOT_USED
                home = rootdir / "home/user"
                fill = int(ROOT_USED * root.size) - used_bytes(rootdir)
                content.fill(
                    home,
                    max(fill, 16 * MiB),
                    {
                        "Documents": ("text", 0.55),
                        "Pictures": ("random", 0.25),
                        "Downloads": ("compressed", 0.20),
                    },
                )
                stale(rootdir, content, int(STALE_SHARE * root.size))
                root_used = used_bytes(rootdir)
                # data: the downloaded packages, then documents, archives and random data
                debs = sorted((rootdir / "var/cache/apt/archives").glob("*.deb"))
                (datadir / "Downloads").mkdir(exist_ok=True)
                for deb in debs:
                    shutil.copyfile(deb, datadir / "Downloads" / deb.name)
                content.written["deb"] = sum(d.stat().st_size for d in debs)
                fill = int(TARGET_USED * size) - esp_used - root_used - used_bytes(datadir)
                content.fill(
                    datadir,
                    max(fill, 64 * MiB),
                    {
                        "Documents": ("text", 0.35),
                        "Archives": ("compressed", 0.25),
                        "Photos": ("random", 0.25),
                        "Backup": ("random", 0.15),
                    },
                )
                stale(datadir, content, int(STALE_SHARE * data.size))
            image.content = dict(content.written)
        finally:
            self.loops.detach(loop)
            shutil.rmtree(self.folder / f"mnt-{os.getpid()}", ignore_errors=True)
        os.replace(tmp, path)
        image.build_seconds = round(time.monotonic() - started, 1)
        path.with_suffix(".json").write_text(image.to_json())
        log(f"{name} built in {image.build_seconds:.0f} s")
        return image

    def _esp(self, node: str, rootdir: Path, content: Content, size: int) -> int:
        """Kernel, initrd, GRUB modules and a firmware blob; a deleted old kernel."""
        staging = self.folder / f"esp-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        debian = staging / "EFI" / "debian"
        debian.mkdir(parents=True)
        (staging / "EFI" / "BOOT").mkdir()
        for kernel in sorted((rootdir / "boot").glob("vmlinuz-*")):
            shutil.copyfile(kernel, debian / "vmlinuz")
            shutil.copyfile(kernel, staging / "EFI" / "BOOT" / "BOOTX64.EFI")
        for initrd in sorted((rootdir / "boot").glob("initrd.img-*")):
            shutil.copyfile(initrd, debian / "initrd.img")
        grub = rootdir / "usr/lib/grub/x86_64-efi"
        if grub.is_dir():
            shutil.copytree(grub, debian / "x86_64-efi")
        content.write(staging / "EFI" / "fwupd" / "capsule.cab", "compressed", 12 * MiB)
        content.write(staging / "EFI" / "debian" / "grubenv", "text", 1 * KiB)
        names = [str(p) for p in sorted(staging.iterdir())]
        run(["mcopy", "-s", "-m", "-i", node, *names, "::/"], env=MTOOLS_ENV)
        old = staging / "OLDKERNEL.EFI"
        content.write(old, "random", int(size * STALE_SHARE))
        run(["mcopy", "-i", node, str(old), "::/OLDKERNEL.EFI"], env=MTOOLS_ENV)
        run(["mdel", "-i", node, "::/OLDKERNEL.EFI"], env=MTOOLS_ENV)
        used = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()) - old.stat().st_size
        shutil.rmtree(staging)
        return used

    def change(self, base: DiskImage, name: str) -> DiskImage:
        """A copy of `base` with about CHANGE_BYTES of new files on root and data."""
        started = time.monotonic()
        log(f"building {name}: {base.name} plus {CHANGE_BYTES // 1000 // 1000} MB of new files")
        path = self.folder / f"{name}.img"
        tmp = path.with_suffix(".img.tmp")
        run(["cp", "--sparse=always", str(base.path), str(tmp)])
        loop = self.loops.attach(tmp, direct_io=False)
        content: Content | None = None
        floor = 0
        try:
            mnt = self.folder / f"mnt-{os.getpid()}"
            with (
                mounted(partition_node(loop.node, 2), mnt / "root", "ext4") as rootdir,
                mounted(partition_node(loop.node, 3), mnt / "data", "ntfs") as datadir,
            ):
                content = Content(
                    text_corpus(
                        [
                            rootdir / "usr/share/doc",
                            rootdir / "usr/lib/python3",
                            Path("/usr/lib/python3"),
                        ]
                    ),
                    seed=61,
                )
                part = CHANGE_BYTES // 6 // 512 * 512
                for number in range(2):  # root: 20 MB of documents, 10 MB of packages
                    content.write(
                        rootdir / f"home/user/Documents/new/report-{number}.txt", "text", part
                    )
                content.write(
                    rootdir / "var/cache/apt/archives/update_1.0_amd64.deb", "compressed", part
                )
                # data: 15 MB of documents, 15 MB of photos
                content.write(datadir / "Documents/new/minutes.txt", "text", part)
                content.write(datadir / "Documents/new/budget.csv", "text", part // 2)
                content.write(datadir / "Photos/new/IMG_0001.jpg", "random", part)
                content.write(datadir / "Photos/new/IMG_0002.jpg", "random", part // 2)
                added = [
                    *(rootdir / "home/user/Documents/new").iterdir(),
                    rootdir / "var/cache/apt/archives/update_1.0_amd64.deb",
                    *(datadir / "Documents/new").iterdir(),
                    *(datadir / "Photos/new").iterdir(),
                ]
                floor = zstd3_size(added)
        finally:
            self.loops.detach(loop)
            shutil.rmtree(self.folder / f"mnt-{os.getpid()}", ignore_errors=True)
        os.replace(tmp, path)
        written = dict(content.written) if content else {}
        written["added_files_zstd3"] = floor
        image = DiskImage(
            name,
            path,
            base.size,
            base.parts,
            content=written,
            build_seconds=round(time.monotonic() - started, 1),
            rootfs=base.rootfs,
        )
        path.with_suffix(".json").write_text(image.to_json())
        return image

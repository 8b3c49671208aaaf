"""`appliance mount`, `umount` and `files`: one partition of an image, read-only.

    appliance mount --repo R --image I [--partition N] DIR     (or --file FILE)
    appliance umount DIR
    appliance files --repo R --image I [--partition N] [PATH] [--json]   (or --file FILE)

`mount` returns once DIR shows the partition's files, leaving the view in a process of its
own; `umount` undoes every step, also after that process was killed. `files` lists a
folder of the partition without the user mounting anything (jobs/imagemount.py).
"""

from __future__ import annotations

import argparse
import os
import stat
import time
from pathlib import Path
from typing import Any

from appliance.cli import netrepo
from appliance.cli.output import fit80, print_json
from appliance.errors import DeviceError, UsageError
from appliance.repo.netaddress import is_network
from appliance.units import human_size


def add_parsers(sub: Any) -> None:  # argparse._SubParsersAction of main.Parser
    def source(p: argparse.ArgumentParser, net: bool) -> None:
        p.add_argument("--repo", help="the repository (or a folder of Clonezilla images)")
        if net:
            netrepo.add_options(p)
        else:  # a lasting mount reads no share, but an encrypted repository's passphrase
            netrepo.add_passphrase_option(p)
        p.add_argument("--image", help="the image's name, as `images` lists it")
        p.add_argument(
            "--file",
            metavar="FILE",
            help="a VM disk file (.qcow2 .vhd .vhdx .vmdk .vdi) or raw .img instead",
        )
        p.add_argument(
            "--partition",
            type=int,
            metavar="N",
            help="the partition (needed when several can be mounted)",
        )
        p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser("mount", help="mount one partition of an image read-only at a folder")
    source(p, net=False)
    p.add_argument("dir", metavar="DIR", help="an empty folder")

    p = sub.add_parser("umount", help="unmount what `appliance mount` mounted")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser("files", help="list a folder of a partition of an image (read-only)")
    source(p, net=True)
    p.add_argument("path", nargs="?", default="/", metavar="PATH", help="a folder (default /)")


def image_ref(args: argparse.Namespace) -> Any:
    """The ImageRef the command line names; one sentence when it names none or both."""
    from appliance.jobs.imagemount import ImageRef

    if args.file is not None:
        if args.repo is not None or args.image is not None:
            raise UsageError(
                "Name either an image (--repo DIR --image NAME) or a file (--file FILE), not both."
            )
        if not Path(args.file).exists():
            raise UsageError(f"There is no file {args.file}.")
        return ImageRef(file=str(Path(args.file).resolve()))
    if args.repo is None or args.image is None:
        raise UsageError(
            f"Name the image with --repo DIR --image NAME, or a disk file with --file FILE "
            f"(see `appliance {args.command} --help`)."
        )
    repo = args.repo
    if not is_network(repo) and "://" not in repo:
        repo = str(Path(repo).resolve())
    return ImageRef(repo=repo, image=args.image)


def run_mount(args: argparse.Namespace) -> int:
    from appliance.jobs.imagemount import start_mount

    if args.repo is not None and is_network(args.repo):
        raise UsageError(
            "A repository on a file server (ssh://, smb://, nfs://) is mounted only while "
            "a command runs; list its files with `appliance files`, or mount the share "
            "yourself and name its folder."
        )
    ref = image_ref(args)
    record = start_mount(ref, args.partition, Path(args.dir))
    result = {
        "dir": record["dir"],
        "repo": ref.repo,
        "image": ref.image,
        "file": ref.file,
        "partition": record["partition"],
        "fstype": record["fstype"],
        "pid": record["pid"],
    }
    if args.json:
        print_json(result)
    else:
        print(
            fit80(
                f"Mounted partition {record['partition']} ({record['fstype']}) of "
                f"{ref.describe()} read-only at {record['dir']}; `appliance umount "
                f"{record['dir']}` unmounts it."
            )
        )
    return 0


def run_umount(args: argparse.Namespace) -> int:
    from appliance.jobs.imagemount import stop_mount

    record = stop_mount(Path(args.dir))
    if args.json:
        print_json({"dir": record["dir"], "partition": record.get("partition")})
    else:
        print(f"Unmounted {record['dir']}.")
    return 0


KINDS = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink"}


def entry(folder: Path, name: str) -> dict[str, Any]:
    """One name of a listing: its type, size (files and links) and modification time."""
    st = os.lstat(folder / name)
    kind = KINDS.get(stat.S_IFMT(st.st_mode), "other")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime))
    out: dict[str, Any] = {"name": name, "type": kind, "size": None, "mtime": stamp}
    if kind in ("file", "symlink"):
        out["size"] = st.st_size
    if kind == "symlink":
        out["target"] = os.readlink(folder / name)
    return out


def inside(root: Path, path: str) -> Path:
    """PATH of the partition as a folder below `root`; one sentence when it is not one or a
    symbolic link leads out of the partition."""
    root = Path(os.path.realpath(root))
    rel = path.strip("/")
    full = Path(os.path.realpath(root / rel)) if rel else root
    if full != root and root not in full.parents:
        raise UsageError(f"{path} leads outside the partition (through a symbolic link).")
    if not full.exists():
        raise UsageError(f"There is no {path} in the partition.")
    if not full.is_dir():
        raise UsageError(f"{path} is a file, not a folder; name its folder to list it.")
    return full


def run_files(args: argparse.Namespace) -> int:
    from appliance.jobs.imagemount import choose, mounted_partition

    ref = image_ref(args)
    choice = choose(ref, args.partition)
    with mounted_partition(ref, choice.number) as root:
        folder = inside(root, args.path)
        try:
            names = sorted(os.listdir(folder))
            entries = [entry(folder, name) for name in names]
        except OSError as exc:
            raise DeviceError(
                f"{args.path} of partition {choice.number} cannot be read: {exc.strerror}."
            ) from exc
    path = "/" + args.path.strip("/")
    if args.json:
        print_json(
            {
                "repo": ref.repo,
                "image": ref.image,
                "file": ref.file,
                "partition": choice.number,
                "fstype": choice.fstype,
                "path": path,
                "entries": entries,
            }
        )
        return 0
    print(f"{path} of {choice.describe()} of {ref.describe()}:")
    for item in entries:
        size = "" if item["size"] is None else human_size(item["size"])
        name = item["name"] + ("/" if item["type"] == "dir" else "")
        if item["type"] == "symlink":
            name += f" -> {item['target']}"
        print(f"  {item['type']:<7} {size:>10}  {item['mtime'][:16].replace('T', ' ')}  {name}")
    if not entries:
        print("  (empty)")
    return 0

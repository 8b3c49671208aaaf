"""A repository behind a passphrase (encrypted, or with a key that signs its images) saved
from a plain disk, as the root tests of both kinds hold it: blank targets, copies of the
repository to damage, and a command line with the passphrase file."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from kit.diskbuild import sparse_file
from kit.loops import Loops
from kit.plaindisk import PLAIN_DISK_SIZE


@dataclass(kw_only=True)
class SecretRepo:
    loops: Loops
    folder: Path
    source: str  # the saved disk's loop node
    repo: Path
    pass_file: Path
    log: Path  # the appliance's log file during the tests

    def blank(self, name: str) -> tuple[str, Path]:
        """A new all-zero disk of the source's size: (node, backing file)."""
        path = sparse_file(self.folder, name, PLAIN_DISK_SIZE)
        return self.loops.attach(path), path

    def copy_repo(self, name: str, source: Path | None = None) -> Path:
        """A copy of the repository (or of `source`) to change."""
        dest = self.folder / name
        shutil.copytree(source or self.repo, dest)
        return dest

    def with_pass(self, *args: str) -> list[str]:
        return [*args, "--passphrase-file", str(self.pass_file)]

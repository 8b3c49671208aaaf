"""A disk with unreadable sectors, without device-mapper: a FUSE file that serves an image
file but answers EIO for chosen byte ranges; a loop device on top of it is a block device
whose reads there fail, as a dying disk's do.

    python3 tests/kit/faultyfile.py IMAGE MOUNTPOINT START:LENGTH [START:LENGTH ...]
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from typing import Any

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # libfuse3, as the appliance's views
import mfusepy as fuse


def main() -> None:
    image, mountpoint, *specs = sys.argv[1:]
    bad = [tuple(int(x) for x in spec.split(":")) for spec in specs]
    fd = os.open(image, os.O_RDONLY)
    size = os.fstat(fd).st_size

    class Faulty(fuse.Operations):  # type: ignore[misc]
        use_ns = True

        def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
            if path == "/":
                return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
            if path == "/disk":
                return {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": size}
            raise fuse.FuseOSError(errno.ENOENT)

        def readdir(self, path: str, fh: Any) -> list[str]:
            return [".", "..", "disk"]

        def read(self, path: str, length: int, offset: int, fh: Any) -> bytes:
            for start, count in bad:
                if offset < start + count and start < offset + length:
                    raise fuse.FuseOSError(errno.EIO)
            return os.pread(fd, length, offset)

    fuse.FUSE(Faulty(), mountpoint, foreground=True, ro=True, allow_other=True)


if __name__ == "__main__":
    main()

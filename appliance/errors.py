"""One exception hierarchy. Each class carries a sentence written for users and a fixed exit code.

Only the top level (cli.main) catches everything; it prints `str(error)` and exits with
`error.exit_code`. Raise these with a full sentence that names the disk, image or file.

A job that finished but has something the user must read (a partition copied whole,
unreadable sectors saved as zeros) is not an error: it prints its warnings, one line each,
and exits with WARNINGS_EXIT.
"""

from __future__ import annotations

#: done, with warnings: read the warnings (the image is complete and usable)
WARNINGS_EXIT = 20


class ApplianceError(Exception):
    """Base: something the user can understand went wrong."""

    exit_code = 1

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self.sentence = sentence

    def __str__(self) -> str:
        return self.sentence


class UsageError(ApplianceError):
    """The command line itself is wrong (unknown disk name, missing option)."""

    exit_code = 2


class ToolMissing(ApplianceError):
    """An external program the job needs is not installed."""

    exit_code = 3


class DeviceError(ApplianceError):
    """A disk cannot be found, read or written (unplugged, unreadable, not a block device)."""

    exit_code = 4


class SafetyRefusal(ApplianceError):
    """A safety rule forbids the job; nothing was written."""

    exit_code = 5


class RepositoryError(ApplianceError):
    """The repository is missing, foreign, truncated, full or not writable."""

    exit_code = 6


class RepositoryLocked(RepositoryError):
    """Another program is writing to the repository."""

    exit_code = 7


class NetworkError(RepositoryError):
    """A repository on the network (a web server, a bucket, a mounted share) stopped
    answering in the middle of a job: the sentence names the host and the cause. Not
    damaged data (that is CorruptData); the target of a stopped restore keeps its marker."""

    exit_code = 12


class ImageError(ApplianceError):
    """The image is missing, incomplete or does not fit the target."""

    exit_code = 8


class UnsupportedImage(ImageError):
    """Another tool's image, or a part of it, that this appliance cannot read (LVM in a
    Clonezilla image, an unknown compressor, ...): said before a byte is written."""


class CorruptData(ApplianceError):
    """A chunk or index does not match its hash."""

    exit_code = 9


class VerifyMismatch(ApplianceError):
    """A disk's data differs from the image it is compared with."""

    exit_code = 10


class ToolFailed(ApplianceError):
    """An external program failed; the sentence says which and what it printed."""

    exit_code = 11


class Cancelled(ApplianceError):
    """The user or a signal stopped the job."""

    exit_code = 130

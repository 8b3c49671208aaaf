"""The kernel command line's ``appliance.*`` keys: the job that ``appliance unattended`` runs.

The live system runs ``appliance unattended`` on tty1 when ``appliance.job=`` is on the
kernel command line. Keys (values with spaces go in double quotes: ``appliance.target="model:
Samsung SSD 870"``):

==================  =============================================================================
appliance.job       ``save``, ``restore``, ``verify`` or ``receive`` (required; ``receive``: the
                    image a ``cast send`` multicasts, onto appliance.target; needs no repo/image)
appliance.repo      the partition that holds the repository: ``LABEL=IMAGES``, ``UUID=...``,
                    ``PARTUUID=...``, ``PARTLABEL=...`` or ``/dev/sdb1``; or a file server:
                    ``ssh://user@host/path``, ``smb://host/share/path``, ``nfs://host/export``;
                    or a repository read without a mount (lab mode, appliance.cli.labmode):
                    ``http(s)://host/path/`` (a web server, read-only), ``s3://bucket/prefix``
                    (required)
appliance.credentials  for a file server: ``PARTITION:/FILE``, a credentials file (username=,
                    password=, domain=, identity=) on a partition named as appliance.repo's;
                    for s3://: a file of ``AWS_...=value`` lines. Never a password or key on
                    this line (``appliance.aws_secret...`` and the like are refused). Without
                    it the job asks nothing.
appliance.passphrase_file  an encrypted repository's passphrase: ``PARTITION:/FILE``, a file
                    (its first line) on a partition named as appliance.repo's, read and the
                    partition unmounted before the job. Never the passphrase itself: a key
                    such as ``appliance.passphrase=`` is refused.
appliance.host_key  for ssh://: the server's host key fingerprint (SHA256:...) to trust
appliance.repo_dir  the repository's folder inside that filesystem (default: its top folder)
appliance.image     the image's name (required)
appliance.source    save: the disk to save (required for save)
appliance.target    restore: the disk to overwrite (required); verify: also compare this disk;
                    or a rule (appliance.plan.targetrule): ``auto``/``internal`` (the only
                    internal disk), ``largest`` (the largest non-USB disk), ``serial=XYZ``
appliance.then      ``shell`` (default: stay on the screen), ``poweroff`` or ``reboot``; only
                    after success: a failed job always stays on the screen with its sentence
appliance.level     save: zstd level 1-19 (default 3)
appliance.wait      seconds to wait for the disks and the repository to appear (default 30)
appliance.interface receive: the network interface (default: the one of the default route)
appliance.from      receive: the sender's repository over HTTP (default: as the stream says)
==================  =============================================================================

Disks are named ``serial:XYZ``, ``model:NAME`` or a kernel name (appliance.disk.naming).
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import UsageError

PREFIX = "appliance."
JOBS = ("save", "restore", "verify", "receive")
THEN = ("shell", "poweroff", "reboot")
KEYS = (
    "job",
    "repo",
    "repo_dir",
    "image",
    "source",
    "target",
    "then",
    "level",
    "wait",
    "credentials",
    "host_key",
    "interface",
    "from",
    "passphrase_file",
)


@dataclass(frozen=True)
class JobSpec:
    """One unattended job, as the kernel command line asks for it."""

    job: str
    repo: str
    image: str
    repo_dir: str = ""
    source: str | None = None
    target: str | None = None
    then: str = "shell"
    level: int = 3
    wait: float = 30.0
    credentials: str | None = None  # PARTITION:/FILE
    host_key: str | None = None
    interface: str | None = None  # receive
    cast_from: str | None = None  # receive: the sender's repository over HTTP
    passphrase_file: str | None = None  # PARTITION:/FILE

    def describe(self) -> str:
        if self.job == "receive":
            return f"receive of a multicast image onto {self.target}, then {self.then}"
        disk = f" of {self.source}" if self.job == "save" else ""
        onto = f" onto {self.target}" if self.job == "restore" else ""
        against = f" against {self.target}" if self.job == "verify" and self.target else ""
        return (
            f"{self.job}{disk} image {self.image}{onto}{against}, repository {self.repo}"
            f"{'/' + self.repo_dir if self.repo_dir else ''}, then {self.then}"
        )

    @property
    def disk(self) -> str | None:
        """How the command line names the disk the job reads (save) or writes (restore)."""
        return self.source if self.job == "save" else self.target


def split_cmdline(text: str) -> list[str]:
    """The kernel's words: split at blanks outside double quotes, the quotes removed."""
    words: list[str] = []
    current: list[str] = []
    quoted = False
    started = False
    for char in text:
        if char == '"':
            quoted = not quoted
            started = True
        elif char.isspace() and not quoted:
            if started:
                words.append("".join(current))
            current, started = [], False
        else:
            current.append(char)
            started = True
    if started:
        words.append("".join(current))
    return words


def parse_cmdline(text: str) -> JobSpec | None:
    """The job the command line asks for, or None when it has no ``appliance.job``."""
    values: dict[str, str] = {}
    for word in split_cmdline(text):
        if not word.startswith(PREFIX):
            continue
        key, sep, value = word[len(PREFIX) :].partition("=")
        _refuse_secret(key)
        if key not in KEYS:
            raise UsageError(
                f"The kernel command line has {PREFIX}{key}, which the appliance "
                f"does not know; the keys are {', '.join(PREFIX + k for k in KEYS)}."
            )
        if not sep or not value.strip():
            raise UsageError(f"{PREFIX}{key} on the kernel command line has no value.")
        values[key] = value.strip()
    if "job" not in values:
        return None
    job = values["job"]
    if job not in JOBS:
        raise UsageError(f"{PREFIX}job={job} is not a job; use save, restore, verify or receive.")
    for key in ("repo", "image") if job != "receive" else ():
        if key not in values:
            raise UsageError(
                f"The unattended {job} needs {PREFIX}{key}= on the kernel command line."
            )
    needed = {"save": "source", "restore": "target", "receive": "target"}.get(job)
    if needed and needed not in values:
        raise UsageError(
            f"The unattended {job} needs {PREFIX}{needed}= on the kernel command "
            "line (serial:..., model:... or a kernel name such as sda)."
        )
    then = values.get("then", "shell")
    if then not in THEN:
        raise UsageError(f"{PREFIX}then={then} is not known; use shell, poweroff or reboot.")
    return JobSpec(
        job=job,
        repo=values.get("repo", ""),
        image=values.get("image", ""),
        repo_dir=values.get("repo_dir", "").strip("/"),
        source=values.get("source") if job == "save" else None,
        target=values.get("target") if job != "save" else None,
        then=then,
        level=_number("level", values.get("level", "3"), 1, 19),
        wait=float(_number("wait", values.get("wait", "30"), 0, 3600)),
        credentials=_credentials_place(values.get("credentials")),
        host_key=values.get("host_key"),
        interface=values.get("interface"),
        cast_from=values.get("from"),
        passphrase_file=_file_place("passphrase_file", values.get("passphrase_file")),
    )


SECRET_WORDS = ("secret", "password", "passwd", "token", "aws_", "access_key", "passphrase")
NOT_SECRETS = ("passphrase_file",)  # names a file that holds the secret


def _refuse_secret(key: str) -> None:
    """A secret on the kernel command line is readable by every process and every log."""
    if key.lower() in NOT_SECRETS:
        return
    if any(word in key.lower() for word in SECRET_WORDS):
        raise UsageError(
            f"{PREFIX}{key} puts a secret on the kernel command line, where every program "
            f"can read it; put it in a file and name it with {PREFIX}credentials=PARTITION:/FILE."
        )


def _credentials_place(text: str | None) -> str | None:
    if text is not None and ":/" not in text:
        raise UsageError(
            f"{PREFIX}credentials={text} must name a partition and a file on it, "
            "such as LABEL=KEYS:/office.cred."
        )
    return text


def _file_place(key: str, text: str | None) -> str | None:
    """PARTITION:/FILE; anything else is refused without repeating it (it may be the
    passphrase itself, typed in the wrong place)."""
    if text is not None and ":/" not in text:
        raise UsageError(
            f"{PREFIX}{key}= must name a partition and a file on it, such as "
            "LABEL=KEYS:/lab.pass; never the passphrase itself."
        )
    return text


def _number(key: str, text: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise UsageError(f"{PREFIX}{key}={text} must be a whole number from {low} to {high}.")
    return int(text)

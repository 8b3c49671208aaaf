"""Lab mode of the unattended job: a room of PCs boots one kernel command line.

What it adds to ``appliance unattended`` (appliance.cli.unattended):

- a repository that needs no mount: ``appliance.repo=http://...``, ``https://...`` (a web
  server, read-only) or ``s3://BUCKET/PREFIX`` (AWS variables from the credentials file that
  ``appliance.credentials=PART:/FILE`` names: AWS_ACCESS_KEY_ID=..., never on the command
  line);
- the target chosen by a rule (``auto``, ``internal``, ``largest``, ``serial=XYZ``:
  appliance.plan.targetrule), the choice printed and logged with the disk's model, size and
  serial before anything is written;
- the summary line of the job written into the repository's ``logs/`` folder where the
  repository can be written (appliance.repo.joblog), else only printed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from appliance.cli.cmdline import JobSpec
from appliance.disk import probe
from appliance.disk.model import Disk
from appliance.disk.naming import resolve_disk
from appliance.errors import ApplianceError, UsageError
from appliance.plan.targetrule import choose_target, describe, is_rule
from appliance.repo import joblog
from appliance.repo.repository import ADDRESS_RE, open_store

log = logging.getLogger(__name__)

STORE_SCHEMES = ("http", "https", "s3")


def is_store_address(location: str) -> bool:
    """A repository the job reads without mounting anything: a web server or a bucket."""
    match = ADDRESS_RE.match(location)
    return match is not None and match.group(1).lower() in STORE_SCHEMES


def store_location(spec: JobSpec) -> str:
    """The repository's address, with appliance.repo_dir appended."""
    base = spec.repo.rstrip("/")
    return f"{base}/{spec.repo_dir}" if spec.repo_dir else base


def parse_aws_file(text: str, name: str) -> dict[str, str]:
    """The AWS variables of a credentials file: ``AWS_...=value`` lines (``export`` and
    quotes allowed, ``#`` comments); anything else is a sentence that names the line."""
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.startswith("AWS_") or not key.replace("_", "").isalnum():
            raise UsageError(
                f"Line {number} of the credentials file {name} is not an AWS_...=value "
                "line; an s3:// repository reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
                "AWS_ENDPOINT_URL, AWS_REGION and the other AWS variables from it."
            )
        found[key] = value.strip().strip("'\"")
    if not found:
        raise UsageError(f"The credentials file {name} holds no AWS_...=value line.")
    return found


def use_aws_variables(values: dict[str, str]) -> list[str]:
    """Put the variables into this process's environment, where boto3 reads them; their
    names (never the values) for the job's lines."""
    os.environ.update(values)
    return sorted(values)


#: the disks a rule chooses among; tests restrict it to the loop devices they attached
candidate_disks: Callable[[], list[Disk]] = probe.list_disks


def resolve_target(text: str, say: Callable[[str], None]) -> tuple[str, str]:
    """The device node that appliance.target= (or source=) names, and how the log line names
    the disk. A rule's choice is printed and logged before anything is written."""
    if is_rule(text):
        choice = choose_target(text, candidate_disks())
        line = f"target: appliance.target={text} chose {choice.line}"
        say(line)
        log.info("%s", line)
        return choice.disk.node, describe(choice.disk)
    node = resolve_disk(text)
    try:
        return node, describe(probe.probe_disk(node))
    except ApplianceError:  # the job itself says what is wrong with the disk
        return node, node


@dataclass
class Summary:
    """The job's summary line, written when the job ends however it ends."""

    spec: JobSpec
    location: str
    say: Callable[[str], None]
    writable: Callable[[], bool] = lambda: True
    target: str = ""
    started: float = field(default_factory=time.monotonic)
    when: float = field(default_factory=time.time)

    def finish(self, result: str) -> None:
        pc = joblog.pc_identity()
        seconds = time.monotonic() - self.started
        line = joblog.summary_line(pc, self.spec.image, self.target, result, seconds, self.when)
        key = None
        try:
            store = open_store(self.location)
            if self.writable():
                key = joblog.write_summary(store, pc, line, self.when)
        except ApplianceError as exc:
            log.info("no summary line written to %s: %s", self.location, exc)
        log.info("summary: %s", line)
        where = f"written to {key}" if key else "not written: the repository is read-only here"
        self.say(f"summary ({where}): {line}")


@contextlib.contextmanager
def summary(
    spec: JobSpec, location: str, say: Callable[[str], None], writable: Callable[[], bool]
) -> Iterator[Summary]:
    """Time the job; at its end write its line (``ok`` or ``FAILED: sentence``)."""
    record = Summary(spec, location, say, writable)
    try:
        yield record
    except ApplianceError as exc:
        record.finish(f"FAILED: {exc}")
        raise
    except BaseException:
        record.finish("FAILED: stopped")
        raise
    record.finish("ok")


def folder_location(mountpoint: Path, spec: JobSpec) -> str:
    """The repository's folder inside a mounted filesystem."""
    return str(mountpoint / spec.repo_dir) if spec.repo_dir else str(mountpoint)

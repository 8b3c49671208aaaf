"""Passphrases and key backups on the command line (appliance/cli/keys.py), and the kernel
command line's passphrase file (appliance/cli/cmdline.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli.cmdline import parse_cmdline
from appliance.cli.keys import decode_export, encode_export, read_passphrase_file
from appliance.errors import UsageError
from appliance.repo.keyring import strength
from appliance.repo.sealing import unwrap_key, wrap_key

CHEAP = {"iterations": 1, "memory_kib": 64, "lanes": 1}
REPO_ID = "0123456789abcdef0123456789abcdef"


def test_export_is_short_printable_and_types_back() -> None:
    blob = wrap_key(b"k" * 32, REPO_ID, "pw", CHEAP)
    text = encode_export(blob)
    lines = text.splitlines()
    assert len(lines) <= 8 and all(len(line) <= 80 and line.isascii() for line in lines)
    retyped = "\n".join(line.lower() for line in lines)  # case does not matter
    assert unwrap_key(decode_export(retyped, "paper"), "pw") == (REPO_ID, b"k" * 32)


def test_a_mistyped_line_is_named() -> None:
    lines = encode_export(wrap_key(b"k" * 32, REPO_ID, "pw", CHEAP)).splitlines()
    number, *groups, check = lines[3].split()
    first = groups[0]
    groups[0] = ("B" if first[0] != "B" else "C") + first[1:]
    lines[3] = "  ".join([number, " ".join(groups), check])
    with pytest.raises(UsageError, match=f"line {number} is mistyped"):
        decode_export("\n".join(lines), "paper")
    with pytest.raises(UsageError, match="whole key backup"):
        decode_export("\n".join(lines[:3]), "paper")


def test_passphrase_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "pass"
    path.write_text("correct horse battery staple\nignored\n")
    path.chmod(0o600)
    assert read_passphrase_file(path) == "correct horse battery staple"
    path.chmod(0o644)
    with pytest.raises(UsageError, match="chmod 600") as caught:
        read_passphrase_file(path)
    assert "correct horse" not in str(caught.value)
    path.chmod(0o600)
    path.write_text("")
    with pytest.raises(UsageError, match="empty"):
        read_passphrase_file(path)


def test_strength_hint() -> None:
    assert strength("hunter2") == "weak"
    assert strength("Hunter2-Hunter2") == "fair"
    assert strength("correct horse battery staple") == "strong"


BASE = "appliance.job=restore appliance.repo=LABEL=IMAGES appliance.image=a appliance.target=sda"


def test_kernel_command_line_takes_a_passphrase_file() -> None:
    spec = parse_cmdline(f"{BASE} appliance.passphrase_file=LABEL=KEYS:/lab.pass")
    assert spec is not None and spec.passphrase_file == "LABEL=KEYS:/lab.pass"


@pytest.mark.parametrize(
    "word",
    [
        "appliance.passphrase=hunter2",
        "appliance.repo_passphrase=hunter2",
        "appliance.passphrase_file=hunter2",
    ],
)
def test_kernel_command_line_refuses_a_passphrase(word: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_cmdline(f"{BASE} {word}")
    assert "hunter2" not in str(caught.value)

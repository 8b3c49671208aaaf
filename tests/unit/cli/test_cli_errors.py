"""Bad input: one sentence on stderr, a non-zero exit, never a traceback."""

import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, timeout=60
    )


def one_sentence(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("appliance: ")
    return lines[0]


@pytest.mark.parametrize(
    "args, words",
    [
        ([], "required"),
        (["frobnicate"], "invalid choice"),
        (["save", "sda"], "required"),
        (["save", "sda", "--repo", "/tmp/x", "--image", "y", "--level", "99"], "invalid choice"),
        (["images", "--repo", "/nonexistent/repo"], "does not exist"),
        (["verify", "--repo", "/nonexistent/repo", "--image", "x"], "does not exist"),
        (["gc", "--repo", "/nonexistent/repo"], "does not exist"),
        (["save", "sda", "--repo", "/tmp/x", "--image", "y", "--workers", "0"], "1 to 64"),
        (["restore", "--repo", "/tmp/x", "--image", "y", "sdb", "--workers", "two"], "1 to 64"),
    ],
)
def test_usage_errors(args: list[str], words: str) -> None:
    proc = run(*args)
    assert words in one_sentence(proc)


def test_images_of_empty_repo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from appliance.repo.repository import Repository

    Repository.open_or_create(tmp_path / "r")
    proc = run("images", "--repo", str(tmp_path / "r"))
    assert proc.returncode == 0 and "holds no images" in proc.stdout
    proc = run("images", "--repo", str(tmp_path / "r"), "--json")
    assert '"images": []' in proc.stdout


def test_unknown_image(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from appliance.repo.repository import Repository

    Repository.open_or_create(tmp_path / "r")
    proc = run("verify", "--repo", str(tmp_path / "r"), "--image", "nope")
    assert "no image named nope" in one_sentence(proc)
    proc = run("verify", "--repo", str(tmp_path / "r"), "--image", "../etc")
    assert "not allowed" in one_sentence(proc)


def test_foreign_repo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "repo.json").write_text('{"format": "something-else"}')
    (tmp_path / "chunks").mkdir()
    proc = run("images", "--repo", str(tmp_path))
    assert "another program" in one_sentence(proc)

"""Run the real `appliance` command line from tests, and small helpers around it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[2]


def appliance(
    *args: str,
    check: bool = True,
    timeout: float = 600,
    stdin: int | None = subprocess.DEVNULL,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`appliance ARGS` from this tree (also when `cwd`, the folder it runs in, is another)."""
    proc = subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=stdin,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(PROJECT)} if cwd is not None else None,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"appliance {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def refused(proc: subprocess.CompletedProcess[str], exit_code: int, words: str) -> str:
    """Assert one sentence on stderr with the expected exit code; return the sentence."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == exit_code, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert words in lines[0], lines[0]
    return lines[0]


def result_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    results = [line for line in lines if line.get("type") == "result"]
    assert results, proc.stdout
    return results[-1]


def file_digest(path: Path) -> str:
    """sha256 of a (sparse) image file: proves a disk was not written."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def chunk_files(repo: Path) -> set[str]:
    return {p.name for p in (repo / "chunks").glob("*/*/*") if not p.name.startswith(".")}


def image_chunks(repo: Path, image: str) -> set[str]:
    """Chunk names an image's indexes name, read without the appliance package."""
    import zstandard

    names: set[str] = set()
    for idx in (repo / "images" / image).glob("*.idx"):
        data = json.loads(zstandard.ZstdDecompressor().decompress(idx.read_bytes()))
        names.update(c for c in data["chunks"] if c)
    return names

"""A repository served read-only by a web server: images, info, verify and restore over HTTP(S)
from a real nginx and a real `python3 -m http.server`, and a fault-injecting proxy between
them and the appliance (tests/kit/webserve.py).

The GPT disk of tests/kit/diskbuild.py is saved once into a local repository; the repository
folder is served as plain files; restored disks are compared with the source
(tests/kit/diskcompare.py). Each failure is one sentence with its exit code, and a target
that was not to be written is byte-for-byte unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from kit.cli import appliance, file_digest, refused
from kit.diskbuild import GPT_DISK_SIZE, sparse_file
from kit.diskcompare import assert_equivalent
from kit.interrupt import has_valid_table, reported
from kit.saved import Saved, saved_gpt_disk
from kit.webserve import FaultProxy, Faults, free_port, http_server, nginx

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Saved]:
    with saved_gpt_disk(tmp_path_factory.mktemp("http")) as found:
        yield found


@pytest.fixture(scope="module")
def served(saved: Saved) -> Iterator[str]:
    """nginx with its folder listing on, serving the folder that holds the repository."""
    with nginx(saved.folder, saved.folder) as base:
        yield f"{base}/repo/"


def last_chunk(repo: Path, region: str = "p3") -> str:
    """The name of the last stored chunk of a region (the restore reaches it late)."""
    index = repo / "images" / "base" / f"{region}.idx"
    data = json.loads(zstandard.ZstdDecompressor().decompress(index.read_bytes()))
    return str([c for c in data["chunks"] if c][-1])


def blank_target(saved: Saved, folder: Path) -> tuple[str, Path]:
    path = sparse_file(folder, "target.img", GPT_DISK_SIZE)
    return saved.loops.attach(path), path


def test_images_info_and_verify_over_nginx(saved: Saved, served: str) -> None:
    listed = json.loads(appliance("images", "--repo", served, "--json").stdout)
    assert [i["name"] for i in listed["images"]] == ["base"]
    assert listed["images"][0]["restorable"]
    info = appliance("info", "--repo", served, "--image", "base", "--json").stdout
    assert '"base"' in info
    text = appliance("verify", "--repo", served, "--image", "base").stdout
    assert "Image base is intact" in text
    # a web server is read-only: verify kept no record there
    assert not (saved.repo / "images" / "base" / "verified.json").exists()


def test_restore_from_nginx_equals_the_source(saved: Saved, served: str, tmp_path: Path) -> None:
    target, _ = blank_target(saved, tmp_path)
    appliance("restore", "--repo", served, "--image", "base", target, "--yes")
    assert_equivalent(saved.source, target, same_size=True)
    saved.loops.detach(target)


def test_python_http_server_lists_images_its_own_way(saved: Saved) -> None:
    with http_server(saved.folder, saved.folder) as base:
        listed = json.loads(appliance("images", "--repo", f"{base}/repo", "--json").stdout)
        assert [i["name"] for i in listed["images"]] == ["base"]
        text = appliance("verify", "--repo", f"{base}/repo", "--image", "base").stdout
        assert "Image base is intact" in text


def test_a_server_without_listing_still_restores_by_name(saved: Saved) -> None:
    with nginx(saved.folder, saved.folder, autoindex=False) as base:
        proc = appliance("images", "--repo", f"{base}/repo/", check=False)
        sentence = refused(proc, 6, f"The web server at {base} does not list the folder images/")
        assert "--image" in sentence
        text = appliance("verify", "--repo", f"{base}/repo/", "--image", "base").stdout
        assert "Image base is intact" in text


def test_503_and_a_cut_body_are_retried_and_resumed(
    saved: Saved, served: str, tmp_path: Path
) -> None:
    chunk = last_chunk(saved.repo)
    other = last_chunk(saved.repo, "p2")
    faults = Faults(unavailable={"repo.json": 2, other: 2}, cut={chunk: 2})
    target, _ = blank_target(saved, tmp_path)
    with FaultProxy(served.removesuffix("/repo/"), faults) as proxy:
        appliance("restore", "--repo", f"{proxy.url}/repo/", "--image", "base", target, "--yes")
    assert_equivalent(saved.source, target, same_size=True)
    saved.loops.detach(target)
    assert len(faults.requests("/repo.json")) >= 3  # two 503s, then the answer
    # its head checked before the first write (two 503s, then the answer), then read whole
    assert [r[2] for r in faults.requests(other)] == ["bytes=0-15"] * 3 + [""]
    gets = [r for r in faults.requests(chunk) if r[0] == "GET"]
    size = (saved.repo / "chunks" / chunk[:2] / chunk[2:4] / chunk).stat().st_size
    # whole, cut, then the rest of it asked for from where each cut stopped
    resumed = [r[2] for r in gets if r[2].startswith("bytes=") and not r[2].startswith("bytes=0-")]
    assert resumed and resumed[0] == f"bytes={size // 2}-", gets


def test_an_altered_byte_is_named_and_the_target_marked(
    saved: Saved, served: str, tmp_path: Path
) -> None:
    chunk = last_chunk(saved.repo)
    faults = Faults(flip={chunk})
    target, _ = blank_target(saved, tmp_path)
    with FaultProxy(served.removesuffix("/repo/"), faults) as proxy:
        url = f"{proxy.url}/repo/"
        proc = appliance("verify", "--repo", url, "--image", "base", check=False)
        refused(proc, 9, f"The web server at {proxy.url} sent chunk {chunk} with wrong content")
        proc = appliance("restore", "--repo", url, "--image", "base", target, "--yes", check=False)
    sentence = refused(proc, 9, f"The web server at {proxy.url} sent chunk {chunk} with wrong")
    assert f"{target} holds an incomplete restore of base" in sentence
    assert not has_valid_table(target)
    assert reported(target) is not None
    saved.loops.detach(target)


def test_unreachable_server_and_missing_repository(
    saved: Saved, served: str, tmp_path: Path
) -> None:
    target, path = blank_target(saved, tmp_path)
    before = file_digest(path)
    nobody = f"http://127.0.0.1:{free_port()}"
    proc = appliance(
        "restore", "--repo", f"{nobody}/repo/", "--image", "base", target, "--yes", check=False
    )
    refused(proc, 6, f"The web server at {nobody} cannot be reached: the connection was refused")
    missing = served.replace("/repo/", "/nothing/")
    proc = appliance("restore", "--repo", missing, "--image", "base", target, "--yes", check=False)
    refused(proc, 6, f"{missing} is not an image repository")
    proc = appliance("images", "--repo", missing, check=False)
    refused(proc, 6, f"{missing} is not an image repository")
    saved.loops.detach(target)
    assert file_digest(path) == before


def test_jobs_that_write_are_refused(saved: Saved, served: str) -> None:
    before = sorted(p.name for p in (saved.repo / "images").iterdir())
    for args in (
        ["save", saved.source, "--repo", served, "--image", "again"],
        ["gc", "--repo", served],
        ["delete", "--repo", served, "--image", "base", "--yes"],
    ):
        proc = appliance(*args, check=False)
        refused(proc, 6, f"The repository at {served} is on a web server, which is read-only")
    assert sorted(p.name for p in (saved.repo / "images").iterdir()) == before


def test_https_needs_a_trusted_certificate(saved: Saved, tmp_path: Path) -> None:
    with nginx(saved.folder, tmp_path, tls=True) as base:
        url = f"{base}/repo/"
        proc = appliance("images", "--repo", url, check=False)
        refused(proc, 6, f"The web server at {base} could not be checked over TLS")
        cert = next(tmp_path.glob("nginx-*/cert.pem"))
        env = {**os.environ, "SSL_CERT_FILE": str(cert)}
        listed = json.loads(_with_env(env, "images", "--repo", url, "--json"))
        assert [i["name"] for i in listed["images"]] == ["base"]


def _with_env(env: dict[str, str], *args: str) -> str:
    """`appliance ARGS` with another environment (the CA it trusts), its stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_from_a_web_server_into_a_folder(saved: Saved, served: str, tmp_path: Path) -> None:
    """A repository on a web server is copied image by image into a folder (every chunk
    re-hashed on the way), and the copy restores like the original."""
    local = tmp_path / "local"
    appliance("import", "--repo", str(local), "--from", served, "--image", "base", "--create")
    target, _ = blank_target(saved, tmp_path)
    appliance("restore", "--repo", str(local), "--image", "base", target, "--yes")
    assert_equivalent(saved.source, target, same_size=True)
    saved.loops.detach(target)

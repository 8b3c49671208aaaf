"""Lab mode on real parts: an unattended restore from a real nginx onto the loop disk that
``appliance.target=largest`` chooses, from a labelled partition with the summary line written
into its logs/ folder, and ``internal`` refused among several disks with nothing written.

The rules choose among the loop disks this test attached (labmode.candidate_disks): other
loop devices of this shared machine are never candidates.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.cli import appliance, file_digest
from kit.diskbuild import GPT_DISK_SIZE, MiB, sparse_file
from kit.diskcompare import assert_equivalent, run
from kit.s3server import clear_aws_settings, moto_server
from kit.saved import Saved, saved_gpt_disk
from kit.sshserver import fuse_mounts_under, ssh_server
from kit.webserve import nginx

from appliance.cli import labmode, unattended
from appliance.cli.unattended import Console
from appliance.disk import probe
from appliance.repo import mount as repomount

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Saved]:
    with saved_gpt_disk(tmp_path_factory.mktemp("lab")) as found:
        yield found


@pytest.fixture
def room(
    saved: Saved, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[tuple[Path, str]]]:
    """Two blank disks (file, node), the second 100 MiB larger; the rules see these only."""
    files = [
        sparse_file(tmp_path, "small.img", GPT_DISK_SIZE),
        sparse_file(tmp_path, "large.img", GPT_DISK_SIZE + 100 * MiB),
    ]
    nodes = [saved.loops.attach(f) for f in files]
    monkeypatch.setattr(labmode, "candidate_disks", lambda: [probe.probe_disk(n) for n in nodes])
    monkeypatch.setattr(unattended.time, "sleep", lambda s: None)
    monkeypatch.setattr(repomount, "RUN_DIR", tmp_path / "run")
    yield list(zip(files, nodes, strict=True))
    for node in nodes:
        saved.loops.detach(node)


def _job(line: str) -> tuple[int, str, list[str]]:
    out = io.StringIO()
    actions: list[str] = []
    code = unattended.run(line, Console(out, []), power_action=actions.append)
    return code, out.getvalue(), actions


def test_restore_from_nginx_onto_the_largest_disk(
    saved: Saved, room: list[tuple[Path, str]]
) -> None:
    (small, _), (large, chosen) = room
    before = file_digest(small)
    with nginx(saved.folder, saved.folder) as base:
        code, text, actions = _job(
            f"boot=live appliance.job=restore appliance.repo={base}/repo/ "
            "appliance.image=base appliance.target=largest appliance.then=poweroff"
        )
    assert code == 0, text
    assert actions == ["poweroff"]
    line = next(x for x in text.splitlines() if "appliance.target=largest chose" in x)
    assert f"the largest non-USB disk: {chosen} (Loop device, 629.1 MB, no serial)" in line
    # the choice is said before the plan that erases the disk
    assert text.index("appliance.target=largest chose") < text.index("will be ERASED")
    assert_equivalent(saved.source, chosen, False, resized=(3,), moved=(4,))
    assert file_digest(small) == before
    # a web server is read-only: the summary line is printed, not written
    summary = next(x for x in text.splitlines() if x.startswith("summary ("))
    assert "not written: the repository is read-only here" in summary
    fields = summary.split(": ", 1)[1].split("\t")
    assert fields[3:6] == ["base", f"{chosen} (Loop device, 629.1 MB, no serial)", "ok"]
    assert not (saved.repo / "logs").exists()


def _repository_partition(saved: Saved, folder: Path, label: str) -> tuple[str, Path]:
    """A 300 MiB disk whose ext4 partition labelled `label` holds a copy of the repository."""
    node = saved.loops.attach(sparse_file(folder, "repo-disk.img", 300 * MiB))
    run("sfdisk", "--quiet", node, input="label: gpt\nstart=2048, type=linux\n")
    run("partx", "-u", node)
    part = f"{node}p1"
    run("mkfs.ext4", "-q", "-F", "-L", label, part)
    mnt = saved.loops.mountpoint(f"copy-{label}")
    run("mount", part, str(mnt))
    try:
        run("cp", "-a", str(saved.repo), str(mnt / "images-lab"))
    finally:
        run("umount", str(mnt))
    return part, mnt


def _logs(part: str, mnt: Path) -> list[str]:
    run("mount", "-o", "ro", part, str(mnt))
    try:
        folder = mnt / "images-lab" / "logs"
        return [p.read_text() for p in sorted(folder.iterdir())] if folder.exists() else []
    finally:
        run("umount", str(mnt))


def test_a_labelled_partition_gets_a_summary_line_per_job(
    saved: Saved, room: list[tuple[Path, str]], tmp_path: Path
) -> None:
    (small, _), (large, chosen) = room
    label = "L" + uuid.uuid4().hex[:10].upper()
    part, mnt = _repository_partition(saved, tmp_path, label)
    common = (
        f"appliance.job=restore appliance.repo=LABEL={label} appliance.repo_dir=images-lab "
        "appliance.image=base appliance.wait=1 appliance.then=reboot"
    )
    digests = [file_digest(small), file_digest(large)]

    # two internal disks: `internal` cannot tell which; a sentence, nothing written
    code, text, actions = _job(f"{common} appliance.target=internal")
    assert code == 2 and actions == [], text
    assert "FAILED: appliance.target=internal found 2 internal disks" in text
    assert "choose one with appliance.target=largest or appliance.target=serial=" in text
    assert [file_digest(small), file_digest(large)] == digests
    failed = _logs(part, mnt)
    assert len(failed) == 1 and "\tFAILED: appliance.target=internal found 2" in failed[0]

    code, text, actions = _job(f"{common} appliance.target=largest")
    assert code == 0 and actions == ["reboot"], text
    assert "summary (written to logs/" in text
    assert "mounted read-only" in text  # the job read it read-only; the line came after
    assert_equivalent(saved.source, chosen, False, resized=(3,), moved=(4,))
    assert file_digest(small) == digests[0]
    lines = _logs(part, mnt)
    assert len(lines) == 2
    done = next(x for x in lines if "\tok\t" in x).rstrip("\n").split("\t")
    assert done[3] == "base" and done[4].startswith(chosen)
    assert float(done[6]) > 0
    assert not os.path.ismount(tmp_path / "run" / f"repo-{Path(part).name}")
    # `appliance images` lists the image, not the logs
    run("mount", "-o", "ro", part, str(mnt))
    try:
        out = appliance("images", "--repo", str(mnt / "images-lab"), "--json").stdout
        assert '"logs"' not in out and '"base"' in out
    finally:
        run("umount", str(mnt))


def _keys_partition(saved: Saved, folder: Path, label: str, files: dict[str, str]) -> None:
    """A small disk whose ext4 partition labelled `label` holds `files` (name -> text)."""
    node = saved.loops.attach(sparse_file(folder, "keys.img", 64 * MiB))
    run("sfdisk", "--quiet", node, input="label: gpt\nstart=2048, type=linux\n")
    run("partx", "-u", node)
    run("mkfs.ext4", "-q", "-F", "-L", label, f"{node}p1")
    mnt = saved.loops.mountpoint(f"keys-{label}")
    run("mount", f"{node}p1", str(mnt))
    try:
        for name, text in files.items():
            (mnt / name).write_text(text)
    finally:
        run("umount", str(mnt))


def test_a_bucket_with_keys_from_a_labelled_partition(
    saved: Saved, room: list[tuple[Path, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s3:// in lab mode: the AWS variables come from a file on a partition (never the
    command line), the restore goes onto the disk `largest` picks, and the summary line
    lands in the bucket's logs/."""
    (small, _), (large, chosen) = room
    clear_aws_settings(monkeypatch, tmp_path)
    with moto_server(tmp_path) as server:
        client = server.client()
        client.create_bucket(Bucket="lab")
        for path in sorted(p for p in saved.repo.rglob("*") if p.is_file()):
            key = f"room1/{path.relative_to(saved.repo)}"  # the folder copied as it is
            client.put_object(Bucket="lab", Key=key, Body=path.read_bytes())
        env = server.env(("KEYID-ROOM1", "SECRET-ROOM1"))
        for name in env:  # set, then removed: the job must take them from the file
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)
        label = "K" + uuid.uuid4().hex[:10].upper()
        text = "".join(f"{name}={value}\n" for name, value in env.items())
        _keys_partition(saved, tmp_path, label, {"s3.env": f"# room 1\n{text}"})
        before = file_digest(small)

        code, out, actions = _job(
            "appliance.job=restore appliance.repo=s3://lab/room1 appliance.image=base "
            f"appliance.credentials=LABEL={label}:/s3.env appliance.target=largest "
            "appliance.wait=2 appliance.then=poweroff"
        )
        assert code == 0 and actions == ["poweroff"], out
        assert "AWS_ACCESS_KEY_ID, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL" in out
        assert "SECRET-ROOM1" not in out and "KEYID-ROOM1" not in out
        assert f"chose the largest non-USB disk: {chosen}" in out
        assert_equivalent(saved.source, chosen, False, resized=(3,), moved=(4,))
        assert file_digest(small) == before
        logs = [k for k in server.objects() if k.startswith("lab/room1/logs/")]
        assert len(logs) == 1 and logs[0].endswith(".txt")
        body = client.get_object(Bucket="lab", Key=logs[0].removeprefix("lab/"))["Body"].read()
        fields = body.decode().rstrip("\n").split("\t")
        assert fields[3:6] == ["base", f"{chosen} (Loop device, 629.1 MB, no serial)", "ok"]


def test_a_share_gets_the_summary_line_of_a_restore(
    saved: Saved, room: list[tuple[Path, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file server in lab mode (sshfs here; nfs:// and smb:// take the same path, their
    kernel modules are in the VM tier): the restore reads the share, the summary line is
    written into its logs/, and the share is unmounted at the end."""
    (small, _), (_, chosen) = room
    run_dir = tmp_path / "run"
    monkeypatch.setenv("APPLIANCE_RUN_DIR", str(run_dir))
    monkeypatch.setenv("APPLIANCE_STATE_DIR", str(tmp_path / "state"))
    with ssh_server(tmp_path / "sshd") as server:
        remote = tmp_path / "remote"
        run("cp", "-a", str(saved.repo), str(remote))
        label = "K" + uuid.uuid4().hex[:10].upper()
        key = (server.folder / "client_key").read_text()
        _keys_partition(saved, tmp_path, label, {"lab.cred": "identity=key\n", "key": key})
        before = file_digest(small)
        try:
            code, out, actions = _job(
                f"appliance.job=restore appliance.repo={server.address(remote)} "
                f"appliance.credentials=LABEL={label}:/lab.cred appliance.image=base "
                f"appliance.host_key={server.fingerprint} appliance.target=largest "
                "appliance.wait=2 appliance.then=poweroff"
            )
        finally:
            for point in reversed(fuse_mounts_under(run_dir)):  # a failed test's leftovers
                run("umount", "-l", point, check=False)
    assert code == 0 and actions == ["poweroff"], out
    assert_equivalent(saved.source, chosen, False, resized=(3,), moved=(4,))
    assert file_digest(small) == before
    lines = [p.read_text() for p in (remote / "logs").iterdir()]
    assert len(lines) == 1 and "\tbase\t" in lines[0] and "\tok\t" in lines[0]
    assert fuse_mounts_under(run_dir) == []

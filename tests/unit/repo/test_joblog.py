"""The per-PC summary lines in the repository's logs/ folder: who the PC is, the line, one
file per PC per job (thirty PCs at once never share a file), and nothing on a web server."""

from __future__ import annotations

import threading
from pathlib import Path

from appliance.repo import joblog
from appliance.repo.httpstore import HttpStore
from appliance.repo.joblog import PcIdentity, pc_identity, summary_line, write_summary
from appliance.repo.repository import Repository
from appliance.repo.store import LocalStore

WHEN = 1_796_083_200.0  # 2026-12-01T00:00:00Z


def _tree(root: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return str(root)


def test_identity_from_dmi_and_the_first_card(tmp_path: Path) -> None:
    dmi = _tree(
        tmp_path / "dmi",
        {"sys_vendor": "LENOVO", "product_name": "20XW", "product_serial": "PF2ABCDE"},
    )
    net = _tree(
        tmp_path / "net",
        {
            "lo/address": "00:00:00:00:00:00",
            "enp0s31f6/address": "54:05:DB:11:22:33",
            "wlp2s0/address": "a0:b1:c2:d3:e4:f5",
        },
    )
    pc = pc_identity(dmi, net)
    assert pc == PcIdentity("LENOVO 20XW S/N PF2ABCDE", "54:05:db:11:22:33")
    assert pc.slug == "LENOVO_20XW_S_N_PF2ABCDE-5405db112233"


def test_identity_without_a_useful_serial_names_the_host(tmp_path: Path) -> None:
    dmi = _tree(tmp_path / "dmi", {"product_name": "Default string", "product_serial": "0"})
    pc = pc_identity(dmi, str(tmp_path / "no-net"))
    assert pc.name.startswith("host ") and pc.mac == ""
    assert pc_identity(str(tmp_path / "none"), str(tmp_path / "none")).name.startswith("host ")


def test_the_line_is_one_tab_separated_row() -> None:
    pc = PcIdentity("Dell OptiPlex S/N 7X\tY", "aa:bb:cc:dd:ee:ff")
    line = summary_line(
        pc, "win11", "/dev/sda (Samsung, 512 GB, S1)", "FAILED: The disk\nwent away.", 83.25, WHEN
    )
    assert line.split("\t") == [
        "2026-12-01T00:00:00Z",
        "Dell OptiPlex S/N 7X Y",
        "aa:bb:cc:dd:ee:ff",
        "win11",
        "/dev/sda (Samsung, 512 GB, S1)",
        "FAILED: The disk went away.",
        "83.2",
    ]


def test_thirty_pcs_at_once_write_thirty_files(tmp_path: Path) -> None:
    repo = Repository.create(LocalStore(tmp_path / "repo"))
    keys: list[str | None] = []

    def one(number: int) -> None:
        pc = PcIdentity(f"PC {number}", f"02:00:00:00:00:{number:02x}")
        keys.append(write_summary(repo.store, pc, f"line of PC {number}", WHEN))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    files = sorted((tmp_path / "repo" / "logs").iterdir())
    assert len(files) == 30 and len(set(keys)) == 30
    assert all(k is not None and k.startswith("logs/20261201-000000-PC_") for k in keys)
    assert sorted(f.read_text() for f in files) == sorted(f"line of PC {n}\n" for n in range(30))
    # the same PC twice in the same second: still two files
    pc = PcIdentity("PC 1", "")
    assert write_summary(repo.store, pc, "a", WHEN) != write_summary(repo.store, pc, "b", WHEN)
    # and `appliance images` does not take logs/ for an image
    assert repo.image_names() == []


def test_a_web_server_gets_no_file() -> None:
    store = HttpStore("http://127.0.0.1:9/repo/")  # put refuses before any request
    assert write_summary(store, PcIdentity("PC", ""), "line", WHEN) is None
    assert joblog.FOLDER == "logs/"

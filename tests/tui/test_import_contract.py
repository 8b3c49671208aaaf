"""appliance/ never imports textual or tui (the engine must work with no UI)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import appliance

ROOT = Path(__file__).resolve().parents[2]


def test_the_engine_never_imports_the_interface() -> None:
    names = sorted(m.name for m in pkgutil.walk_packages(appliance.__path__, "appliance.")
                   if not m.name.endswith("__main__"))
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except ImportError:\n        pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'tui')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_appliance_tui_help_runs_without_a_terminal() -> None:
    proc = subprocess.run([sys.executable, "-m", "tui", "--help"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "--demo" in proc.stdout

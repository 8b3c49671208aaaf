"""The layers of docs/design.md are enforced, not hoped for: `lint-imports` (import-linter,
configured in pyproject.toml) keeps every import of the engine pointing down and keeps the
interface out of it, and the engine's modules import each other without a cycle. The contract
is also shown to fail when an upward import is added to a copy of the tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).parent / "lint-imports"


def lint(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache"],
        cwd=where,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(where), "PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_the_import_contracts_hold() -> None:
    proc = lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 kept, 0 broken" in proc.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    for folder in ("appliance", "tui"):
        shutil.copytree(
            ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    model = tmp_path / "appliance" / "disk" / "model.py"
    model.write_text(model.read_text() + "\nfrom appliance.jobs import save  # upward\n")
    proc = lint(tmp_path)
    assert proc.returncode != 0
    assert "appliance.disk.model -> appliance.jobs.save" in proc.stdout, proc.stdout


def test_the_engine_has_no_import_cycle() -> None:
    graph = grimp.build_graph("appliance", exclude_type_checking_imports=True)
    # Tarjan's strongly connected components: any of more than one module is a cycle
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        for other in graph.find_modules_directly_imported_by(module):
            if other not in graph.modules:
                continue
            if other not in order:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], order[other])
        if low[module] == order[module]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in order:
            visit(module)
    assert cycles == []

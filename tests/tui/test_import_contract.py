"""Who may import whom.

- appliance/ never imports textual or tui (the engine must work with no UI);
- tui/ never imports the command line (appliance.cli): a shared need lives in the engine;
- the screens and widgets never import the app (tui/app.py): they receive the session and
  post messages up; tui/session.py imports no textual;
- tui/ has no import cycle, counting every import statement wherever it stands (in a
  function, under TYPE_CHECKING): a cycle must not hide behind a function-local import.

The tui rules read the source with ast, so they hold for code no test runs.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import appliance

ROOT = Path(__file__).resolve().parents[2]


def test_the_engine_never_imports_the_interface() -> None:
    names = sorted(
        m.name
        for m in pkgutil.walk_packages(appliance.__path__, "appliance.")
        if not m.name.endswith("__main__")
    )
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    try:\n        importlib.import_module(name)\n"
        "    except ImportError:\n        pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'tui')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def test_appliance_tui_help_runs_without_a_terminal() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tui", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "--demo" in proc.stdout


# -- the interface's own rules, from the source ------------------------------------------------


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in the file, wherever it stands. `from a import b`
    yields both a and a.b (b may be a module); relative imports are made absolute."""
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def tui_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted((root / "tui").rglob("*.py"))}


def is_or_under(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


def broken_rules(root: Path = ROOT) -> list[str]:
    """Every import that breaks a rule of the interface, as 'file:line: why'."""
    broken: list[str] = []
    for name, path in tui_modules(root).items():
        where = path.relative_to(root)
        for line, target in imported(path, root):
            why = None
            if is_or_under(target, "appliance.cli"):
                why = "imports the command line (appliance.cli)"
            elif name.startswith(("tui.screens", "tui.widgets")) and is_or_under(target, "tui.app"):
                why = "imports the app (tui.app)"
            elif name == "tui.session" and is_or_under(target, "textual"):
                why = "the session imports textual"
            if why and f"{where}:{line}: {why}" not in broken:
                broken.append(f"{where}:{line}: {why}")
    return broken


def cycles(root: Path = ROOT) -> list[list[str]]:
    """The import cycles among the modules of tui/ (each once, as a path that closes)."""
    modules = tui_modules(root)
    graph = {
        name: sorted({t for _, t in imported(path, root) if t in modules and t != name})
        for name, path in modules.items()
    }
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for nxt in graph[name]:
            if state.get(nxt) == 1:
                loop = [*path[path.index(nxt) :], nxt]
                if frozenset(loop) not in seen:
                    seen.add(frozenset(loop))
                    found.append(loop)
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return found


def test_the_interface_keeps_its_import_rules() -> None:
    assert broken_rules() == []


def test_the_interface_has_no_import_cycle() -> None:
    assert cycles() == []


def test_the_rules_catch_an_upward_import_and_a_cycle(tmp_path: Path) -> None:
    """The checks above can fail: on a copy of tui/ where a widget imports the app (inside a
    function, the old way of dodging the cycle) and a module imports the CLI."""
    for path in (ROOT / "tui").rglob("*.py"):
        copy = tmp_path / path.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    topbar = tmp_path / "tui" / "widgets" / "topbar.py"
    topbar.write_text(
        topbar.read_text(encoding="utf-8")
        + "\n\ndef _app() -> object:\n    from tui.app import ApplianceApp\n\n"
        "    return ApplianceApp\n",
        encoding="utf-8",
    )
    main = tmp_path / "tui" / "__main__.py"
    main.write_text(
        main.read_text(encoding="utf-8") + "\nfrom appliance import cli\n", encoding="utf-8"
    )
    broken = broken_rules(tmp_path)
    assert any(b.startswith("tui/widgets/topbar.py:") and "imports the app" in b for b in broken), (
        broken
    )
    assert any(b.startswith("tui/__main__.py:") and "appliance.cli" in b for b in broken), broken
    assert any("tui.app" in loop and "tui.widgets.topbar" in loop for loop in cycles(tmp_path))

"""The package's shape: imports run one way (no cycle, every module imports on its own), every module is
classified for the run identity, and the README's HDMLoss snippet runs as printed."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from hdm import runs

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hdm"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, name: str) -> set[str]:
    """hdm modules imported anywhere in ``path`` (top level or inside functions), resolved to module names."""
    modules = _modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith("hdm") and target not in ("hdm", name) and not name.startswith(target + "."):
                found.add(target)
    return found


def test_imports_run_one_way():
    graph = {name: _imports(path, name) for name, path in _modules().items()}
    state: dict[str, int] = {}

    def visit(node, trail):
        if state.get(node) == 1:
            raise AssertionError(f"import cycle: {' -> '.join(trail + [node])}")
        if state.get(node) == 2:
            return
        state[node] = 1
        for child in sorted(graph.get(node, ())):
            visit(child, trail + [node])
        state[node] = 2

    for name in graph:
        visit(name, [])


def test_every_module_imports_on_its_own():
    names = sorted(n for n in _modules() if n != "hdm.__main__")
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'hdm' or m.startswith('hdm.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_every_module_is_classified_for_the_run_identity():
    """A module either can change a run's results (its code is hashed into the run's identity) or only reports;
    a new module must be put in one list, so that editing it retrains exactly what it should."""
    training = {p.relative_to(PACKAGE).as_posix() for p in runs.training_files()}
    reporting = {p.relative_to(PACKAGE).as_posix() for p in runs.training_files(runs.REPORTING_MODULES)}
    unmatched = [pattern for pattern in runs.REPORTING_MODULES if not list(PACKAGE.glob(pattern))]
    assert not unmatched, f"REPORTING_MODULES names no file: {unmatched}"
    every = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    assert not training & reporting
    assert every == training | reporting, sorted(every ^ (training | reporting))


def test_code_version_ignores_docs_but_not_code(tmp_path):
    source = 'def f(x):\n    """Doc."""\n    return x + 1  # comment\n'
    (tmp_path / "a.py").write_text(source)
    (tmp_path / "b.py").write_text('def f(x):\n    """Other doc."""\n\n    return x + 1\n')
    (tmp_path / "c.py").write_text('def f(x):\n    """Doc."""\n    return x + 2\n')
    a, b, c = (runs._syntax(tmp_path / f"{n}.py") for n in "abc")
    assert a == b != c


def test_readme_hdmloss_snippet_runs():
    """The README's 'Use the loss in your own training' snippet, executed exactly as printed."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- hdmloss-snippet -->\s*```python\n(.*?)```", readme, re.S)
    assert match, "the README lost its HDMLoss snippet (marked <!-- hdmloss-snippet -->)"
    namespace: dict = {}
    exec(compile(match.group(1), "README.md", "exec"), namespace)
    assert namespace["loss"].ndim == 0 and namespace["heatmaps"].grad is not None

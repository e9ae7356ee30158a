"""The house rules, checked by tools rather than by review (issue 22): layers and no cycles
(import-linter, .importlinter), a small lint rule set (ruff, .ruff.toml), functions a reader can
hold (at most 80 lines), cheap imports for the paths that never train, and notebooks that use
only public names."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "lib"
BIN = Path(sys.executable).parent
MAX_FUNCTION_LINES = 80


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_import_linter_contracts_are_kept():
    """Layers (pipeline > launch > serve > phases > run > budget > core) and no cycles among
    siblings at any depth; function-level imports count (grimp reads every import statement)."""
    r = _run(str(BIN / "lint-imports"), "--config", str(REPO / ".importlinter"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "2 kept, 0 broken" in r.stdout


def test_ruff_rules_hold_on_lib():
    """Unused imports, bare except, complexity, function-level imports of light modules (heavy
    ones are banned at module level instead), and private names imported across modules."""
    r = _run(str(BIN / "ruff"), "check", "lib", "--output-format", "concise")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def _strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's algorithm, iterative: every set of modules that import one another in a ring."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.find_modules_directly_imported_by(w)))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_module_takes_part_in_an_import_cycle():
    graph = grimp.build_graph("lib", cache_dir=None)
    assert _strongly_connected(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    """The check above can fail: a ring of three modules is found."""
    g = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c", "p.d"):
        g.add_module(m)
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.d", "p.a")):
        g.add_import(importer=a, imported=b)
    assert _strongly_connected(g) == [["p.a", "p.b", "p.c"]]


def test_no_function_in_lib_is_longer_than_80_lines():
    long = []
    for path in sorted(LIB.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []


@pytest.mark.parametrize("module", ["lib.launch.estimate", "lib.pipeline.runner", "lib.budget.report",
                                    "lib.run", "lib.generate.engine", "lib.clean.pipeline", "lib.serve.local"])
def test_paths_that_never_train_do_not_import_torch(module):
    """The planner, the runner's checks, the budget report and the phases' CLIs stay cheap to
    import: torch and transformers (~5 s together) load only where a model is used."""
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'transformers', 'sky') if m in sys.modules))"
    r = _run(sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"


def test_notebooks_import_only_public_names():
    """A notebook is the product's front door: it imports public names of public modules
    (never `__main__`, never `_private`)."""
    bad = []
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "code":
                continue
            src = "".join(cell["source"])
            try:
                tree = ast.parse("\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!"))))
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lib"):
                    names = [node.module, *(a.name for a in node.names)]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names if a.name.startswith("lib")]
                else:
                    continue
                if any(part.startswith("_") for name in names for part in name.split(".")):
                    bad.append(f"{nb.name}: {ast.unparse(node)}")
    assert bad == []

"""Every notebook's parameters are visible to the runner, so profile typos are refused, not ignored.

`lib.pipeline` checks profile and `--set` parameters against the names a notebook declares in
its `parameters` cell. If a declared parameter were invisible to that check (papermill's own
`inspect_notebook` misses lines with a `=` inside the trailing comment, e.g.
`max_steps: int = 8  # 0 = the recipe's epochs`), the pipeline would refuse a correct profile
or drop the shared teacher URL. Secrets must never be parameters either.

Run: .venv/bin/pytest tests/test_hardening_notebooks.py -q
"""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _parameters_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name}: expected one code cell tagged `parameters`, found {len(cells)}"
    return cells[0].source


def _assigned_names(source: str) -> list[str]:
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return names


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks yet")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_runner_sees_every_parameter(path: Path):
    source = _parameters_cell(path)
    assigned = _assigned_names(source)
    declared = _declared(path)
    missing = [n for n in assigned if n not in declared]
    assert not missing, f"{path.name}: the runner does not see {missing}"
    for name in assigned:
        assert not ("key" in name.lower() and not name.endswith("_env")), f"{path.name}.{name} looks like a secret"
    assert {"run_dir", "budgets_path"} <= declared


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs_parameters_first_typed_and_commented(path: Path):
    import papermill

    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: the first code cell is not `parameters`"
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} was committed with outputs"
    declared = papermill.inspect_notebook(str(path))
    bare = [n for n, p in declared.items() if p["inferred_type_name"] == "None" or not p["help"]]
    assert not bare, f"{path.name}: parameters without a type or a comment: {bare}"


def _declared(path: Path) -> set[str]:
    from lib import pipeline

    if hasattr(pipeline, "declared_params"):
        return set(pipeline.declared_params(path))
    import papermill

    return set(papermill.inspect_notebook(str(path)))


def test_every_profile_parameter_is_declared_by_its_notebook():
    import yaml

    for prof in sorted((REPO / "lib" / "profiles").glob("*.yaml")):
        spec = yaml.safe_load(prof.read_text())
        for name, params in (spec.get("notebooks") or {}).items():
            nb = REPO / "notebooks" / f"{name}.ipynb"
            assert nb.exists(), f"{prof.name} runs {name}, which does not exist"
            declared = _declared(nb)
            unknown = sorted(set(params or {}) - declared)
            assert not unknown, f"{prof.name}: {name} does not declare {unknown}"

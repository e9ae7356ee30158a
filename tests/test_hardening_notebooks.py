"""Every notebook's parameters are visible to the runner, so profile typos are refused, not ignored.

The runner (lib/core/profiles.py) checks profile and `--set` parameters against the names it reads (with ast) from
a notebook's `parameters` cell; papermill, which injects them and documents them
(`papermill --help-notebook`, `inspect_notebook`), reads the same cell its own way and misses a
line with a `=` inside the trailing comment (`max_steps: int = 8  # 0 = the recipe's epochs`).
The two readings must agree, or a profile value is accepted by one and invisible to the other.
Secrets must never be parameters either.

Run: .venv/bin/pytest tests/test_hardening_notebooks.py -q
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_every_phase_has_its_notebook():
    names = [p.stem for p in NOTEBOOKS]
    assert names[:5] == ["01_generate", "02_clean", "03_train", "04_evaluate", "05_budget"], names


def _runner_and_papermill(path: Path) -> tuple[set[str], set[str]]:
    """Two independent readings of the parameters cell: the runner's (ast) and papermill's."""
    import papermill

    from lib.core.params import declared_params

    return set(declared_params(path)), set(papermill.inspect_notebook(str(path)))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_runner_and_papermill_see_the_same_parameters(path: Path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected one code cell tagged `parameters`, found {len(tagged)}"
    runner, papermill_sees = _runner_and_papermill(path)
    assert runner == papermill_sees, (f"{path.name}: the runner accepts {sorted(runner - papermill_sees)} that "
                                      f"papermill cannot read (a `=` in the comment?), papermill sees "
                                      f"{sorted(papermill_sees - runner)} that the runner refuses")
    for name in runner:
        assert not ("key" in name.lower() and not name.endswith("_env")), f"{path.name}.{name} looks like a secret"
    assert {"run_dir", "budgets_path"} <= runner


def test_the_comparison_catches_a_parameter_papermill_cannot_read(tmp_path):
    """The check above can fail: papermill drops `a` (its comment holds a `=`), the runner keeps it."""
    nb = nbformat.v4.new_notebook(metadata=nbformat.read(NOTEBOOKS[0], as_version=4).metadata)
    cell = nbformat.v4.new_code_cell('a: int = 1  # how many; 0 = all\nb: str = "x"  # a name\n')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    runner, papermill_sees = _runner_and_papermill(path)
    assert runner == {"a", "b"} and papermill_sees == {"b"}


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
    from lib.core.params import declared_params

    return set(declared_params(path))


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

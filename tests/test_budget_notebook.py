"""05_budget executed by papermill on a small run, as the pipeline runs it."""
from __future__ import annotations

from pathlib import Path

import nbformat
import papermill

from tests.test_budget_report import make_run

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "05_budget.ipynb"


def test_parameters_are_the_run_and_the_budgets():  # outputs and typing: tests/test_hardening_notebooks.py
    declared = papermill.inspect_notebook(str(NOTEBOOK))
    assert set(declared) == {"run_dir", "budgets_path"}
    assert all(p["inferred_type_name"] == "str" and p["help"] for p in declared.values())


def test_notebook_renders_the_report(tmp_path):
    run = tmp_path / "run"
    make_run(run)
    out = tmp_path / "05_budget.ipynb"
    # from notebooks/ with the default budgets_path, as `make lab` runs it
    papermill.execute_notebook(str(NOTEBOOK), str(out), cwd=str(NOTEBOOK.parent), kernel_name="python3",
                               progress_bar=False, parameters={"run_dir": str(run)})
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert any("Seed recipes" in o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert (run / "report" / "budget.md").is_file() and (run / "report" / "budget.png").is_file()

"""05_budget executed by papermill on a real run, as the pipeline runs it: the shared tiny
loop's (tests/tiny_loop.py)."""
from __future__ import annotations

from pathlib import Path

import papermill

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "05_budget.ipynb"


def test_parameters_are_the_run_and_the_budgets():  # outputs and typing: tests/test_hardening_notebooks.py
    declared = papermill.inspect_notebook(str(NOTEBOOK))
    assert set(declared) == {"run_dir", "budgets_path"}
    assert all(p["inferred_type_name"] == "str" and p["help"] for p in declared.values())


def test_notebook_renders_the_report(tiny_loop):
    # the loop ran it from notebooks/ with the default budgets_path, as `make lab` runs it
    run = tiny_loop.run
    assert set(tiny_loop.params["05_budget"]) == {"run_dir"}
    outputs = tiny_loop.outputs("05_budget")
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert any("Seed recipes" in o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert (run / "report" / "budget.md").is_file() and (run / "report" / "budget.png").is_file()

"""01_generate executed by papermill on tiny parameters against the real local server.

    .venv/bin/pytest tests/test_generate_notebook.py -q
"""
from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "01_generate.ipynb"

# The `tiny` profile: one short greedy request.
TINY = {"num_instructions_to_generate": 5, "max_requests": 1, "tasks_per_request": 3, "max_tokens": 96,
        "temperature": 0.0, "concurrency": 1}


def test_notebook_declares_its_parameters():  # outputs and typing: tests/test_hardening_notebooks.py
    import papermill

    declared = papermill.inspect_notebook(str(NOTEBOOK))
    assert {"run_dir", "budgets_path", "teacher_base_url", "teacher_model", "api_key_env", "price_model", "seed_path",
            "num_instructions_to_generate", "concurrency", "max_tokens", "temperature", "use_batch_api",
            "language"} <= set(declared)


def test_notebook_generates_charts_and_cost(local_server, tmp_path, monkeypatch):
    import papermill

    secret = "sk-canary-" + os.urandom(12).hex()
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    run = tmp_path / "run"
    out = tmp_path / "01_generate.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK), str(out), cwd=str(NOTEBOOK.parent), kernel_name="python3", progress_bar=False,
        parameters={"run_dir": str(run),  # budgets_path: the default, from notebooks/ as `make lab` runs it
                    "teacher_base_url": local_server.base_url, "teacher_model": local_server.model, **TINY})
    assert (run / "data" / "generated.jsonl").exists()
    assert len((run / "data" / "generate" / "responses.jsonl").read_text().splitlines()) == 1
    for name in ("verbs", "lengths", "rejections", "rouge"):
        assert (run / "report" / f"generate_{name}.png").stat().st_size > 5_000
    cost = json.loads((run / "report" / "generate_cost.json").read_text())
    assert cost["usd"] == 0.0 and cost["reference_model"] == "gpt-4o-mini"
    text = out.read_text()
    assert "cost per 1,000 kept" in text
    assert "image/png" in text
    # the key in the environment never reaches the executed notebook or the run directory
    assert secret not in text
    assert not any(secret in p.read_text(errors="ignore") for p in run.rglob("*") if p.is_file())

"""01_generate executed by papermill on tiny parameters against the real local server: the
default suite's one run of it, in the shared tiny loop (tests/tiny_loop.py).

    .venv/bin/pytest tests/test_generate_notebook.py -q
"""
from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "01_generate.ipynb"


def test_notebook_declares_its_parameters():  # outputs and typing: tests/test_hardening_notebooks.py
    import papermill

    declared = papermill.inspect_notebook(str(NOTEBOOK))
    assert {"run_dir", "budgets_path", "teacher_base_url", "teacher_model", "api_key_env", "price_model", "seed_path",
            "num_instructions_to_generate", "concurrency", "max_tokens", "temperature", "use_batch_api",
            "language"} <= set(declared)


def test_notebook_generates_charts_and_cost(tiny_loop):
    """The loop's 01 (tests/tiny_loop.py: the tiny profile's requests), from notebooks/ with the
    default budgets_path as `make lab` runs it, with a canary key in OPENAI_API_KEY."""
    run, secret, params = tiny_loop.run, tiny_loop.canary, tiny_loop.params["01_generate"]
    assert (run / "data" / "generated.jsonl").exists()
    replies = [json.loads(x) for x in (run / "data" / "generate" / "responses.jsonl").read_text().splitlines()]
    # every list request it was allowed, unless the target was reached first
    assert sum(r["kind"] == "list" for r in replies) == params["max_requests"] or \
        len(tiny_loop.teacher_records) >= params["num_instructions_to_generate"]
    for name in ("verbs", "lengths", "rejections", "rouge"):
        assert (run / "report" / f"generate_{name}.png").stat().st_size > 5_000
    cost = json.loads((run / "report" / "generate_cost.json").read_text())
    assert cost["usd"] == 0.0 and cost["reference_model"] == "gpt-4o-mini"
    text = tiny_loop.executed("01_generate").read_text()
    assert "cost per 1,000 kept" in text
    assert "image/png" in text
    # the key in the environment never reaches the executed notebook (the whole run directory, byte
    # by byte: tests/test_pipeline.py::test_tiny_loop_end_to_end_leaks_no_key)
    assert secret not in text

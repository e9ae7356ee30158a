"""02_clean executed by papermill on tiny parameters, as the pipeline runs it: its successful
run is the shared tiny loop's (tests/tiny_loop.py); the runs here stop on bad input.

    .venv/bin/pytest tests/test_clean_notebook.py -q
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from tests.test_clean_filters import good_records, planted_records

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "02_clean.ipynb"

# The `tiny` profile: what the pipeline test passes (fast: no tokenizer needed).
TINY = {"max_tokens": -1, "detect_languages": "en,zh,fr,de"}


def test_notebook_declares_its_parameters():  # outputs and typing: tests/test_hardening_notebooks.py
    import papermill

    declared = papermill.inspect_notebook(str(NOTEBOOK))
    assert {"run_dir", "budgets_path", "input_path", "format", "languages", "tokenizer", "max_tokens"} <= set(declared)


def _execute(run_dir: Path, **params):
    import papermill

    out = run_dir / "02_clean.ipynb"
    # from notebooks/ with the default budgets_path, as `make lab` runs it
    papermill.execute_notebook(str(NOTEBOOK), str(out), cwd=str(NOTEBOOK.parent), kernel_name="python3",
                               progress_bar=False, parameters={"run_dir": str(run_dir), **params})
    return nbformat.read(out, as_version=4)


def test_notebook_cleans_a_tiny_run(tiny_loop):
    """The loop's 02 cleaned what its 01 generated, topped up with the good records and the
    planted refusals of tests/test_clean_filters.py (tests/tiny_loop.py)."""
    run = tiny_loop.run
    good, planted = [r["id"] for r in good_records()], [r["id"] for r in tiny_loop.planted]
    assert len(planted) == 4
    clean = [json.loads(x) for x in (run / "data" / "clean.jsonl").read_text().splitlines()]
    dropped = [json.loads(x) for x in (run / "data" / "clean_dropped.jsonl").read_text().splitlines()]
    kept = {r["id"] for r in clean}
    # every good record kept, every planted refusal dropped as one, the teacher's records on one side or the other
    assert set(good) <= kept and not set(planted) & kept
    assert kept - set(good) <= {r["id"] for r in tiny_loop.teacher_records}
    assert {d["record"]["id"]: d["stage"] for d in dropped if d["record"]["id"] in planted} == dict.fromkeys(planted, "refusal")
    assert len(clean) + len(dropped) == len(tiny_loop.teacher_records) + len(tiny_loop.topped_up)
    counts = json.loads((run / "report" / "clean_counts.json").read_text())
    refusals = sum(d["stage"] == "refusal" for d in dropped)
    assert counts["dropped_by_stage"]["refusal"] == refusals >= 4 and counts["records_out"] == len(clean)
    assert (run / "report" / "clean_funnel.png").stat().st_size > 10_000
    assert (run / "data" / "clean_dataset" / "dataset_info.json").exists()
    # the notebook shows the funnel: the table as markdown and the chart as a PNG
    outputs = tiny_loop.outputs("02_clean")
    assert any("refusal / AI disclaimer" in o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs)
    # the CPU interval is in the ledger, at $0
    from lib.budget import Ledger

    compute = Ledger(run / "ledger", writer="check").records(kind="compute")
    assert [(r["phase"], r["accelerator"], r["usd"]) for r in compute if r["writer"] == "clean"] == [("data", "cpu", 0.0)]


def test_notebook_stops_on_a_malformed_line(tmp_path):
    from papermill.exceptions import PapermillExecutionError

    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "generated.jsonl").write_text(json.dumps(good_records()[0]) + "\n{broken\n")
    with pytest.raises(PapermillExecutionError, match=r"generated\.jsonl:2: invalid JSON"):
        _execute(run, **TINY)
    assert not (run / "data" / "clean.jsonl").exists()  # nothing half-written


def test_notebook_stops_when_nothing_survives(tmp_path):
    from papermill.exceptions import PapermillExecutionError

    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    refusals = [{k: v for k, v in r.items() if k != "expect"} for r in planted_records()[:4]]
    (run / "data" / "generated.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in refusals))
    with pytest.raises(PapermillExecutionError, match="cleaning kept no records: read .*clean.md"):
        _execute(run, **TINY)
    assert json.loads((run / "report" / "clean_counts.json").read_text())["dropped_by_stage"]["refusal"] == 4


def test_token_budget_and_format_follow_the_recipe(tmp_path):
    """recipe= sets what an empty tokenizer, a 0 max_tokens and an empty prompt_format mean: here
    alpaca_lora's 256-token cut in the Alpaca format (measured with the embedded tokenizer, the one
    on this machine), so a record that training would cut is dropped before any GPU time."""
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    words = ("river stone cloud lantern orchard violin harbor meadow copper thistle ember falcon "
             "granite willow saffron glacier").split()
    story = " ".join(f"{words[i % len(words)]}{i}" for i in range(400))  # ~1,000 tokens, no near-duplicate
    recs = good_records()[:4] + [{"id": "long", "instruction": "Tell a long story.", "input": "", "output": story,
                                  "source": "self-instruct", "lang": ""}]
    (run / "data" / "generated.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))

    nb = _execute(run, recipe="alpaca_lora", tokenizer="embedded", detect_languages="en,zh,fr,de")

    clean = [json.loads(x) for x in (run / "data" / "clean.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in clean) == sorted(r["id"] for r in good_records()[:4])
    counts = json.loads((run / "report" / "clean_counts.json").read_text())
    assert counts["dropped_by_stage"]["token_budget"] == 1
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "for recipe alpaca_lora: at most 256 tokens of embedded in the alpaca format" in printed

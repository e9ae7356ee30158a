"""04_evaluate through papermill on tiny parameters, against the real local judge: its
successful run is the shared tiny loop's (tests/tiny_loop.py); the run here stops on bad input."""
import json
import os
from pathlib import Path

import nbformat
import papermill
import pytest

REPO = Path(__file__).resolve().parent.parent
NB = REPO / "notebooks" / "04_evaluate.ipynb"
SECRET = "sk-canary-" + os.urandom(12).hex()  # made at run time: no key-shaped literal in git


def test_committed_notebook_is_clean_and_parameterised():
    nb = nbformat.read(NB, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[1].source.startswith("import sys, pathlib")  # outputs and the parameters cell: test_hardening_notebooks
    declared = papermill.inspect_notebook(str(NB))
    for name in ("run_dir", "budgets_path", "judge_base_url", "judge_model", "api_key_env", "price_model",
                 "question_set", "max_questions", "models", "max_new_tokens", "judge_max_tokens", "mode"):
        assert name in declared, name
    assert not any("key" in k.lower() and not k.endswith("_env") for k in declared)


def _execute(tmp_path, local_server, **params):
    run_dir = tmp_path / "run"
    out = tmp_path / "04_evaluate.ipynb"
    base = dict(run_dir=str(run_dir), judge_base_url=local_server.base_url,  # budgets_path: the default
                judge_model=local_server.model, question_set="own_en", max_questions=2,
                models={"base": "embedded", "tuned": "embedded"}, prompt_formats={"tuned": "vicuna_v1.1"},
                max_new_tokens=12, judge_max_tokens=32, parse_retries=0, mode="both", n_boot=200, judge_demonstration=True)
    base.update(params)
    old = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = SECRET
    try:
        papermill.execute_notebook(str(NB), str(out), parameters=base, cwd=str(NB.parent), kernel_name="python3",
                                   progress_bar=False)
    finally:
        os.environ.pop("OPENAI_API_KEY") if old is None else os.environ.__setitem__("OPENAI_API_KEY", old)
    return run_dir, out


def test_notebook_tiny(tiny_loop):
    """The loop's 04: the tiny profile's 2 questions, base (embedded) vs the model its 03 trained,
    judged by the shared server in both modes, with a canary key in OPENAI_API_KEY."""
    run_dir, local_server, secret = tiny_loop.run, tiny_loop.server, tiny_loop.canary
    params = tiny_loop.params["04_evaluate"]
    assert (params["max_questions"], params["mode"], params["judge_max_tokens"]) == (2, "both", 32)
    out = tiny_loop.executed("04_evaluate")
    ev = run_dir / "eval"
    results = json.loads((ev / "results.json").read_text())
    pair = results["pairwise"]["pairs"][0]
    assert (pair["model_a"], pair["model_b"]) == ("tuned", "base")
    assert pair["win"] + pair["tie"] + pair["loss"] + pair["unjudged"] == 2
    assert set(results["single"]) <= {"base", "tuned"} and results["evaluation_usd"] == 0.0
    # the judge: the shipped GGUF behind llama.cpp's server, named as its server names it
    assert results["judge"]["local"] and results["judge"]["name"] == local_server.model
    assert results["judge"]["served_models"] == [local_server.model]
    judgments = (ev / "judgments.jsonl").read_text().splitlines()
    assert len(judgments) == 2 * 2 + 2 * 2  # pairwise: 2 questions x 2 orders; single: 2 models x 2 questions
    assert len((ev / "answers.jsonl").read_text().splitlines()) == 4
    for png in ("win_tie_loss.png", "category_scores.png", "order_agreement.png"):
        assert (ev / png).stat().st_size > 1000
    assert any(r["phase"] == "evaluation" for r in map(json.loads, (run_dir / "ledger" / "evaluate.jsonl").read_text().splitlines()))
    # The key in the environment never reaches the executed notebook (the whole run directory, byte
    # by byte: tests/test_pipeline.py::test_tiny_loop_end_to_end_leaks_no_key)
    assert secret not in out.read_text()


def test_notebook_bad_input_writes_nothing(tmp_path, local_server):
    with pytest.raises(papermill.PapermillExecutionError, match="mode 'bogus' is unknown"):
        _execute(tmp_path, local_server, mode="bogus")
    assert not (tmp_path / "run").exists()

"""08_prefer through papermill: the default suite's run of it is the shared tiny loop's
(tests/tiny_loop.py: the tiny profile's parameters, read through the runner's own merge, from
notebooks/, after 04_evaluate and a reviewer's votes). Its model is the loop's SFT model, its
judge the loop's llama.cpp server: pairs sampled and judged in both orders, human votes joined,
DPO trained and metered, base/SFT/DPO compared, every figure saved."""
from __future__ import annotations

import json

import nbformat

from lib.budget import Ledger, load_budgets
from lib.core.profiles import load_profile
from lib.evaluate.pairs import FUNNEL
from tests.test_notebooks_read import reading_problems


def test_notebook_prefers_trains_and_compares_on_the_loop_run(tiny_loop):
    run, params = tiny_loop.run, tiny_loop.params["08_prefer"]
    assert {k: v for k, v in params.items() if k not in ("run_dir", "judge_base_url", "judge_model")} \
        == load_profile("tiny")["notebooks"]["08_prefer"]
    text = tiny_loop.executed("08_prefer").read_text()
    prefer = run / "prefer"

    # Pairs: k answers per prompt from the SFT model, the funnel narrowing, the reviewer's votes joined.
    summary = json.loads((prefer / "summary.json").read_text())
    samples = (prefer / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 2 * params["max_questions"]  # k=2 (the default) answers to each prompt
    f = summary["funnel"]
    assert list(f) == list(FUNNEL) and f["sampled"] >= f["judged"] >= f["consistent"] >= f["kept"]
    pairs = [json.loads(x) for x in (prefer / "pairs.jsonl").read_text().splitlines()]
    humans = [p for p in pairs if p["source"] == "human"]
    assert len(pairs) == f["kept"] + len(humans) and humans  # the loop's reviewer voted on every item
    assert {p["question_id"] for p in humans} == {v["question_id"] for v in tiny_loop.votes}

    # DPO: trained from the loop's model, measured before and after, metered under "preference".
    m = json.loads((prefer / "dpo_metrics.json").read_text())
    assert m["optimizer_steps"] == params["max_steps"] and m["train_pairs"] + m["heldout_pairs"] == len(pairs)
    assert m["heldout_curve"][0]["step"] == 0 and m["heldout_curve"][-1]["step"] == params["max_steps"]
    assert m["model"] == str(run / "model") and (run / "model_dpo" / ".complete").exists()
    ledger = Ledger(run / "ledger", writer="check", budgets=load_budgets())
    assert {r["purpose"] for r in ledger.records(phase="preference")} >= {"prefer:sample", "judge:pairwise", "dpo",
                                                                           "answers:dpo", "answers:sft"}
    assert not [r for r in ledger.records(phase="evaluation") if r["purpose"] == "answers:dpo"]  # the comparison's

    # Base, SFT and DPO on the same questions, every two in both orders, ratings over the three.
    res = json.loads((prefer / "compare" / "results.json").read_text())
    assert [(p["model_a"], p["model_b"]) for p in res["pairwise"]["pairs"]] == [("dpo", "sft"), ("dpo", "base"),
                                                                                ("sft", "base")]
    assert all("length_controlled_win_rate" in p for p in res["pairwise"]["pairs"])
    assert {r["model"] for r in res["ratings"]} <= {"base", "sft", "dpo"} and all(len(r["ci"]) == 2 for r in res["ratings"])
    zephyr = [r for r in res["scorecard"] if r["benchmark"].startswith("zephyr")]
    assert len(zephyr) == 2 and all(not r["comparable"] and "local judge" in r["reason"] for r in zephyr)

    for png in ("funnel", "dpo_curves", "win_tie_loss", "ratings"):
        assert (prefer / f"{png}.png").stat().st_size > 1000, png
    assert "per kept pair" in text and "preference spend" in text
    # as a person reads it: no stderr, warning, nan or progress bar among the saved outputs
    assert not reading_problems(nbformat.read(tiny_loop.executed("08_prefer"), as_version=4))
    nb = nbformat.read(tiny_loop.executed("08_prefer"), as_version=4)
    view = next(c for c in nb.cells if c.cell_type == "code" and "judge_view(" in c.source)
    shown = "\n".join(str(o.get("text") or o.get("data", {})) for o in view.get("outputs", []))
    assert ("order ab" in shown) == bool(f["kept"]) and ("no judge pair kept" in shown) == (not f["kept"]), shown

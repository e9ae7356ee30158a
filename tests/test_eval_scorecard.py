"""Reproduction scorecards (lib/evaluate/scorecard.py, lib/data/published_results.yaml): the local
and tiny profiles are "not comparable" with their reasons; a run with the published protocol
shows its figure beside the published ones.

Run: .venv/bin/python -m pytest -q tests/test_eval_scorecard.py
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lib.evaluate.answers import ModelSpec
from lib.evaluate.questions import load_question_set
from lib.evaluate.results import summarize
from lib.evaluate.scorecard import load_published, scorecard, scorecard_table

REPO = Path(__file__).resolve().parent.parent


def test_published_file_holds_the_issue_figures_with_sources():
    by_id = {b["id"]: b for b in load_published()}
    assert by_id["mt_bench"]["results"] == {"vicuna-13b": 6.39, "vicuna-7b": 6.00, "gpt4all-13b-snoozy": 5.41,
                                            "alpaca-13b": 4.53, "chatglm-6b": 4.50}
    assert by_id["alpaca_eval_2_lc"]["results"] == {"vicuna-13b": 9.22, "vicuna-7b": 6.28, "alpaca-7b": 5.88}
    # The original text: "Alpaca wins 90 versus 89 comparisons against text-davinci-003".
    assert by_id["alpaca_blind"]["results"] == {"alpaca-7b": 90, "text-davinci-003": 89}
    # Zephyr's ablation (arXiv:2310.16944, Table 3): dSFT-1 vs dDPO + dSFT on MT-bench and AlpacaEval 1.0.
    assert by_id["zephyr_dpo_mt_bench"]["results"] == {"dSFT": 6.64, "dDPO": 7.00}
    assert by_id["zephyr_dpo_alpaca_eval"]["results"] == {"dSFT": 85.65, "dDPO": 86.07}
    for b in by_id.values():
        assert b["source"] and b["url"].startswith("https://") and b["judge_label"]


def _profile_results(profile: str, embedded_model) -> dict:
    """results.json as 04_evaluate writes it for a profile: its question set and sample, the judge
    the notebook names for the embedded server."""
    import nbformat

    from lib.core.client import Endpoint
    from lib.evaluate.judge import is_pinned, judge_name
    from lib.core.profiles import load_profile

    nb = nbformat.read(REPO / "notebooks" / "04_evaluate.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    defaults = {n.target.id: ast.literal_eval(n.value) for n in ast.parse(cell.source).body if isinstance(n, ast.AnnAssign)}
    params = {**defaults, **load_profile(profile)["notebooks"]["04_evaluate"]}
    assert params["judge_base_url"] == "" and params["judge_model"] == "embedded"  # the embedded judge
    ep = Endpoint(base_url="http://127.0.0.1:8000/v1", model=str(embedded_model))
    judge = {"name": judge_name(ep), "base_url": "local", "model": params["judge_model"], "local": ep.is_local,
             "pinned": is_pinned(judge_name(ep))}
    qset = load_question_set(params["question_set"], max_questions=params["max_questions"])
    return summarize(qset, [], {}, [], pairs=[], judge=judge, spent_usd=0.0, n_boot=50)


@pytest.mark.parametrize("profile", ["local", "tiny"])
def test_local_profiles_are_not_comparable_and_say_why(profile, embedded_model):
    results = _profile_results(profile, embedded_model)
    card = {r["benchmark"]: r for r in results["scorecard"]}
    assert set(card) == {b["id"] for b in load_published()}
    assert not any(r["comparable"] or r["run"] for r in card.values())
    n = results["questions"]
    assert card["mt_bench"]["reason"].startswith("not comparable: a 135M local judge (smollm2-135m-instruct@")
    assert f"different questions (own_en, {n}; published: mtbench, 80)" in card["mt_bench"]["reason"]
    assert "a 135M local judge" in card["alpaca_eval_2_lc"]["reason"]
    # People judged Alpaca's blind test, so the judge is no reason there: the questions are.
    assert card["alpaca_blind"]["reason"] == f"not comparable: different questions (own_en, {n}; published: selfinstruct)"
    table = scorecard_table(results["scorecard"])
    assert len(table) == len(load_published()) and all(row["this run"] == "" for row in table)
    assert [row["comparable"] for row in table] == [r["reason"] for r in results["scorecard"]]  # whole, never cut
    assert table[0]["published"].startswith("vicuna-13b 6.39/10; vicuna-7b 6.0/10")


def _mtbench_results(shared_data, judge: dict, max_questions: int = 0, graded: bool = True) -> dict:
    qset = load_question_set(f"mtbench:{shared_data / 'mtbench_questions.jsonl'}|"
                             f"{shared_data / 'mtbench_reference_gpt4.jsonl'}", max_questions=max_questions)
    judgments = [{"kind": "single", "question_id": q.question_id, "model_a": "tuned", "model_b": None, "order": None,
                  "turn": t, "judge": judge["name"], "status": "ok", "score": 6 + (i + t) % 2, "category": q.category}
                 for i, q in enumerate(qset.questions) for t in (1, 2)] if graded else []
    answers = {"tuned": {q.question_id: ["answer one", "answer two"] for q in qset.questions}}
    return summarize(qset, [ModelSpec("tuned", "hf", path="/ckpt")], answers, judgments, pairs=[], judge=judge, n_boot=50)


def test_the_published_protocol_is_comparable_and_shown_beside(shared_data):
    gpt4 = {"name": "gpt-4-0613", "model": "gpt-4-0613", "local": False}
    results = _mtbench_results(shared_data, gpt4)
    mt = next(r for r in results["scorecard"] if r["benchmark"] == "mt_bench")
    # 80 questions x 2 turns graded 6,7,7,8... alternating 6/7: mean 6.5.
    assert mt["comparable"] and mt["reason"] == "comparable" and mt["run"] == {"tuned": pytest.approx(6.5)}
    row = next(r for r in scorecard_table(results["scorecard"]) if r["benchmark"] == mt["title"])
    assert row["this run"] == "tuned 6.50/10" and row["comparable"] == "comparable"
    # The same run with a sample of the questions, another judge, or no single grades: each says why.
    sample = _mtbench_results(shared_data, gpt4, max_questions=10)
    assert next(r for r in sample["scorecard"] if r["benchmark"] == "mt_bench")["reason"] == \
        "not comparable: a sample of 10 of the 80 mtbench questions"
    other = _mtbench_results(shared_data, {"name": "gpt-4o-2024-08-06", "model": "gpt-4o-2024-08-06", "local": False})
    assert next(r for r in other["scorecard"] if r["benchmark"] == "mt_bench")["reason"] == \
        "not comparable: different judge (gpt-4o-2024-08-06; published: GPT-4 (gpt-4-0613))"
    ungraded = _mtbench_results(shared_data, gpt4, graded=False)
    assert "no single-answer grades" in next(r for r in ungraded["scorecard"] if r["benchmark"] == "mt_bench")["reason"]


def test_alpaca_blind_test_with_human_votes(shared_data):
    qset = load_question_set(f"selfinstruct:{shared_data / 'selfinstruct_user_oriented_instructions.jsonl'}|"
                             f"{shared_data / 'selfinstruct_text-davinci-003_predictions.jsonl'}", max_questions=6)
    specs = [ModelSpec("tuned", "hf", path="/ckpt"), ModelSpec("davinci", "premade", model="text-davinci-003")]
    judge = {"name": "smollm2-135m-instruct@0000", "local": True}
    results = summarize(qset, specs, {}, [], pairs=[], judge=judge, n_boot=50)
    blind = next(r for r in results["scorecard"] if r["benchmark"] == "alpaca_blind")
    assert blind["reason"] == "not comparable: no human votes against text-davinci-003 (review them in 07_review)"
    votes = [{"model_a": "tuned", "model_b": "davinci", "outcome": o} for o in ("win", "win", "tie", "loss")] + \
            [{"model_a": "davinci", "model_b": "tuned", "outcome": "win"}]  # stored the other way round
    blind = next(r for r in scorecard(results, votes=votes) if r["benchmark"] == "alpaca_blind")
    assert blind["comparable"] and blind["run"] == {"tuned": "2 vs 2 (1 ties)"}


def _three_way_mtbench(shared_data, judge: dict, models=("base", "sft", "dpo")) -> dict:
    """results.json as 08_prefer's comparison writes it on the 80 MT-bench questions, graded alone:
    base 5, sft 6 and dpo 7 on every turn."""
    qset = load_question_set(f"mtbench:{shared_data / 'mtbench_questions.jsonl'}|"
                             f"{shared_data / 'mtbench_reference_gpt4.jsonl'}")
    grade = {"base": 5, "sft": 6, "dpo": 7}
    judgments = [{"kind": "single", "question_id": q.question_id, "model_a": m, "model_b": None, "order": None,
                  "turn": t, "judge": judge["name"], "status": "ok", "score": grade[m], "category": q.category}
                 for q in qset.questions for m in models for t in (1, 2)]
    answers = {m: {q.question_id: ["one", "two"] for q in qset.questions} for m in models}
    specs = [ModelSpec(m, "hf", path=f"/ckpt/{m}") for m in models]
    return summarize(qset, specs, answers, judgments, pairs=[], judge=judge, n_boot=50)


def test_dpo_direction_beside_zephyr_when_comparable_and_why_not_otherwise(shared_data):
    gpt4 = {"name": "gpt-4-0613", "model": "gpt-4-0613", "local": False}
    card = {r["benchmark"]: r for r in _three_way_mtbench(shared_data, gpt4)["scorecard"]}
    mt = card["zephyr_dpo_mt_bench"]
    assert mt["comparable"] and mt["run"] == {"dSFT": pytest.approx(6.0), "dDPO": pytest.approx(7.0)}
    row = next(r for r in scorecard_table(list(card.values())) if r["benchmark"] == mt["title"])
    assert row["this run"] == "dSFT 6.00/10; dDPO 7.00/10" and row["published"] == "dSFT 6.64/10; dDPO 7.0/10"
    # AlpacaEval's direction needs the alpacaeval questions and pairs against text-davinci-003's answers.
    assert card["zephyr_dpo_alpaca_eval"]["reason"].startswith("not comparable: different questions (mtbench, 80")
    # A comparison without a dpo model (04_evaluate's base vs tuned), or by a local judge, says why.
    no_dpo = {r["benchmark"]: r for r in _three_way_mtbench(shared_data, gpt4, ("base", "sft"))["scorecard"]}
    assert no_dpo["zephyr_dpo_mt_bench"]["reason"] == \
        "not comparable: no dpo model in this comparison (08_prefer compares base, sft and dpo)"
    local = {"name": "smollm2-135m-instruct@0000", "model": "embedded", "local": True}
    assert "a 135M local judge" in {r["benchmark"]: r for r in _three_way_mtbench(shared_data, local)["scorecard"]}[
        "zephyr_dpo_mt_bench"]["reason"]

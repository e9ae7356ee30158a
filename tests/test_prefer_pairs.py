"""Preference pairs (lib/evaluate/pairs.py): the swap rule, human votes, and the real loop on the
shared llama.cpp server -- sampled, judged in both orders, resumed without a second call, capped."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from lib.budget import BudgetGuard, Ledger, load_budgets
from lib.budget.guard import worst_case_usd
from lib.core.client import Endpoint
from lib.core.errors import UserError
from lib.evaluate.answers import ModelSpec
from lib.evaluate.judge import Judge, JudgeSettings
from lib.evaluate.pairs import PairSettings, build_pairs, candidate_pairs, human_pairs, judged_pairs
from lib.evaluate.questions import Question, load_question_set


def _rec(qid, a, b, order, sa, sb, status="ok", judge="j"):
    return {"kind": "pairwise", "question_id": qid, "model_a": a, "model_b": b, "order": order, "judge": judge,
            "status": status, "score_a": sa, "score_b": sb, "category": "general"}


def test_only_pairs_both_orders_agree_on_are_kept():
    qs = [Question(f"q{i}", [f"question {i}"]) for i in range(5)]
    table = {"s0": {q.question_id: [f"zero {q.question_id}"] for q in qs},
             "s1": {q.question_id: [f"one {q.question_id}"] for q in qs}}
    table["s1"]["q4"] = table["s0"]["q4"]  # the same answer twice: never judged
    todo, counts = candidate_pairs(qs, table, 2)
    assert set(todo) == {"q0", "q1", "q2", "q3"} and counts == Counter(sampled=5, identical=1)
    judgments = [_rec("q0", "s0", "s1", "ab", 8, 3), _rec("q0", "s0", "s1", "ba", 7, 2),   # s0 wins both: kept
                 _rec("q1", "s0", "s1", "ab", 8, 3), _rec("q1", "s0", "s1", "ba", 2, 9),   # flips: inconsistent
                 _rec("q2", "s0", "s1", "ab", 5, 5), _rec("q2", "s0", "s1", "ba", 5, 5),   # tie both: dropped
                 _rec("q3", "s0", "s1", "ab", 2, 6), _rec("q3", "s0", "s1", "ba", None, None, "unparsed")]
    pairs = judged_pairs(qs, table, todo, judgments, "j", counts)
    assert [(p["question_id"], p["chosen"], p["rejected"], p["source"]) for p in pairs] == [
        ("q0", "zero q0", "one q0", "judge")]
    assert pairs[0]["prompt"] == [{"role": "user", "content": "question 0"}] and pairs[0]["margin"] == 5
    assert (counts["judged"], counts["consistent"], counts["kept"]) == (3, 2, 1)
    assert (counts["inconsistent"], counts["tie"], counts["unjudged"]) == (1, 1, 1)
    # Another judge's verdicts never count.
    assert judged_pairs(qs, table, todo, judgments, "other", Counter()) == []


def test_human_votes_join_as_their_own_pairs_by_majority():
    qs = [Question("q0", ["Name a colour."]), Question("q1", ["Count to two."])]
    answers = {"base": {"q0": ["blue"], "q1": ["1"]}, "sft": {"q0": ["Red."], "q1": ["1, 2"]}}
    votes = [{"question_id": "q0", "model_a": "sft", "model_b": "base", "outcome": "loss"},
             {"question_id": "q0", "model_a": "sft", "model_b": "base", "outcome": "loss"},
             {"question_id": "q0", "model_a": "sft", "model_b": "base", "outcome": "win"},
             {"question_id": "q1", "model_a": "sft", "model_b": "base", "outcome": "tie"},
             {"question_id": "q9", "model_a": "sft", "model_b": "base", "outcome": "win"}]
    counts = Counter()
    pairs = human_pairs(votes, answers, qs, counts)
    assert [(p["question_id"], p["chosen"], p["rejected"], p["source"]) for p in pairs] == [("q0", "blue", "Red.", "human")]
    assert pairs[0]["votes"] == {"loss": 2, "win": 1}
    assert (counts["human_items"], counts["human_tie"], counts["human_unknown"], counts["human_kept"]) == (3, 1, 1, 1)


def _budgets(tmp_path, cap: float):
    path = tmp_path / "budgets.yaml"
    path.write_text(f"""currency: USD
phases:
  data:       {{target: 1, cap: 1}}
  training:   {{target: 1, cap: 1}}
  evaluation: {{target: 1, cap: 1}}
  serving:    {{target: 1, cap: 1}}
  preference: {{target: {cap}, cap: {cap}, warn: 1.0}}
""")
    budgets = load_budgets(path)
    ledger = Ledger(tmp_path / "ledger", writer="prefer", budgets=budgets)
    return ledger, BudgetGuard(budgets, ledger, "preference")


def _spec(ep):
    return ModelSpec("sft", "endpoint", base_url=ep.base_url, model=ep.model, api_key_env="OPENAI_API_KEY",
                     price_model=ep.price_model)


def test_pairs_from_the_real_server_are_resumable_and_metered(tmp_path, local_endpoint):
    qs = load_question_set("own_en", max_questions=1).questions  # one prompt: the judge calls are the cost
    ledger, guard = _budgets(tmp_path, 1.0)
    judge = Judge(local_endpoint, JudgeSettings(max_tokens=24, parse_retries=0), ledger=ledger, guard=guard,
                  phase="preference")
    settings = PairSettings(k=2, temperature=1.0, max_new_tokens=16)
    out = tmp_path / "prefer"
    s = build_pairs(out, _spec(local_endpoint), qs, judge, settings, ledger=ledger, guard=guard)
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert sorted((r["question_id"], r["sample"]) for r in samples) == sorted((q.question_id, i) for q in qs for i in (0, 1))
    f, c = s["funnel"], s["counts"]
    assert f["sampled"] == len(qs) and f["judged"] + c.get("unjudged", 0) + c.get("identical", 0) == len(qs)
    assert f["sampled"] >= f["judged"] >= f["consistent"] >= f["kept"] == s["pairs"]
    pairs = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines() if x]
    assert len(pairs) == f["kept"] and all(p["chosen"] != p["rejected"] for p in pairs)
    calls = ledger.records(kind="api", phase="preference")
    judged = len([x for x in (out / "judgments.jsonl").read_text().splitlines() if x])
    assert len(calls) == 2 * len(qs) + judged and {c["purpose"] for c in calls} <= {"prefer:sample", "judge:pairwise"}
    assert s["usd"] == 0 and s["usd_reference"] > 0  # a local server is $0; the reference prices its tokens
    assert (s["usd_per_kept_pair"] is None) == (f["kept"] == 0)

    # Re-run: nothing asked again, the append-only files unchanged, the same pairs.
    before = {n: (out / n).read_text() for n in ("samples.jsonl", "judgments.jsonl", "pairs.jsonl")}
    again = build_pairs(out, _spec(local_endpoint), qs, judge, settings, ledger=ledger, guard=guard)
    assert {n: (out / n).read_text() for n in before} == before and again["funnel"] == f
    assert len(ledger.records(kind="api", phase="preference")) == len(calls)

    # k=3 later: only the third sample of each prompt is drawn, and only the new pairs judged.
    more = build_pairs(out, _spec(local_endpoint), qs, judge, PairSettings(k=3, max_new_tokens=16),
                       ledger=ledger, guard=guard)
    assert more["answers"] == 3 * len(qs) and more["funnel"]["sampled"] == 3 * len(qs)  # C(3, 2) pairs a prompt
    new = [c for c in ledger.records(kind="api", phase="preference")[len(calls):] if c["purpose"] == "prefer:sample"]
    assert len(new) == len(qs)


def test_a_tiny_preference_cap_stops_before_it_is_crossed(tmp_path, local_endpoint):
    ep = Endpoint(base_url=local_endpoint.base_url, model=local_endpoint.model, price_model="gpt-4o-mini")
    qs = load_question_set("own_en", max_questions=3).questions
    settings = PairSettings(k=2, max_new_tokens=16)
    one = worst_case_usd("gpt-4o-mini", [[{"role": "user", "content": qs[0].turns[0]}]], 16)
    cap = 2.5 * one  # room for two sampling calls, not six
    ledger, guard = _budgets(tmp_path, cap)
    judge = Judge(ep, JudgeSettings(max_tokens=24, parse_retries=0), ledger=ledger, guard=guard, phase="preference")
    s = build_pairs(tmp_path / "prefer", _spec(ep), qs, judge, settings, ledger=ledger, guard=guard)
    assert s["stopped_for_budget"] and s["stopped_for_budget"].startswith("sampling")
    calls = ledger.records(kind="api", phase="preference")
    assert 1 <= len(calls) < 6 and all(c["usd"] > 0 for c in calls)
    assert ledger.spent("preference") <= cap and s["usd"] == pytest.approx(ledger.spent("preference"))


def test_bad_settings_are_one_line_before_any_call(tmp_path, local_endpoint):
    judge = Judge(local_endpoint, JudgeSettings(), phase="evaluation")
    qs = [Question("q0", ["hi"])]
    with pytest.raises(UserError, match="k=1"):
        build_pairs(tmp_path, _spec(local_endpoint), qs, judge, PairSettings(k=1))
    with pytest.raises(UserError, match="phase 'evaluation'"):
        build_pairs(tmp_path, _spec(local_endpoint), qs, judge, PairSettings())
    assert not (tmp_path / "samples.jsonl").exists()

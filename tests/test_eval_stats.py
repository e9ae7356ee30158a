"""The swap rule, win rates, bootstrap intervals and the length-controlled win rate."""
import math

import numpy as np
import pytest

from lib.evaluate.stats import (bootstrap_ci, combine_orders, length_controlled_win_rate, order_agreement,
                                order_verdict, pair_verdicts, win_rate)


@pytest.mark.parametrize("ab,ba,outcome,consistent", [
    ("a", "a", "win", True), ("b", "b", "loss", True), ("tie", "tie", "tie", True),
    ("a", "b", "tie", False), ("b", "a", "tie", False), ("a", "tie", "tie", False), ("tie", "b", "tie", False),
    ("a", None, "unjudged", None), (None, "b", "unjudged", None), (None, None, "unjudged", None),
])
def test_swap_rule(ab, ba, outcome, consistent):
    assert combine_orders(ab, ba) == (outcome, consistent)


def _rec(q, order, s1, s2, status="ok"):
    """A pairwise record as judge.py writes it: s1/s2 are Assistant 1/2 as shown."""
    rec = {"kind": "pairwise", "question_id": q, "category": "c", "model_a": "x", "model_b": "y", "order": order,
           "judge": "j", "status": status}
    if status == "ok":
        rec["scores"] = [s1, s2]
        rec["score_a"], rec["score_b"] = (s1, s2) if order == "ab" else (s2, s1)
    return rec


def test_pair_verdicts_maps_scores_back_to_models():
    recs = [
        _rec("q1", "ab", 8, 5), _rec("q1", "ba", 5, 8),  # x better in both orders -> win
        _rec("q2", "ab", 8, 5), _rec("q2", "ba", 8, 5),  # first slot always wins -> flipped -> tie
        _rec("q3", "ab", 3, 9), _rec("q3", "ba", 9, 3),  # y better in both -> loss
        _rec("q4", "ab", 8, 5), _rec("q4", "ba", 0, 0, status="unparsed"),  # one order missing -> unjudged
    ]
    rows = {r["question_id"]: r for r in pair_verdicts(recs, "x", "y", "j")}
    assert [rows[q]["outcome"] for q in ("q1", "q2", "q3", "q4")] == ["win", "tie", "loss", "unjudged"]
    assert rows["q2"]["consistent"] is False
    ag = order_agreement(list(rows.values()))
    assert ag["questions_with_both_orders"] == 3 and ag["consistent"] == 2
    # First slot won: q1 ab (x first), q2 ab and ba, q3 ba (y first); second slot: q1 ba, q3 ab.
    assert ag["first_position_wins"] == 4 and ag["second_position_wins"] == 2
    assert order_verdict(None) is None


def test_win_rate_counts_ties_half_and_reports_unjudged():
    wr = win_rate(["win", "win", "tie", "loss", "unjudged"])
    assert (wr["win"], wr["tie"], wr["loss"], wr["unjudged"], wr["judged"]) == (2, 1, 1, 1, 4)
    assert wr["win_rate"] == pytest.approx(2.5 / 4)
    assert wr["ci"][0] <= wr["win_rate"] <= wr["ci"][1]
    empty = win_rate(["unjudged"])
    assert empty["judged"] == 0 and math.isnan(empty["win_rate"])


def test_bootstrap_is_deterministic_and_monotone():
    rng = np.random.default_rng(1)
    x = rng.binomial(1, 0.6, size=60).astype(float)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    assert bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)
    widths = []
    for conf in (0.5, 0.8, 0.9, 0.95, 0.99):
        lo, hi = bootstrap_ci(x, confidence=conf, seed=0)
        assert lo <= x.mean() <= hi
        widths.append(hi - lo)
    assert widths == sorted(widths) and widths[0] < widths[-1]
    # More questions -> a narrower interval.
    big = rng.binomial(1, 0.6, size=2000).astype(float)
    lo_b, hi_b = bootstrap_ci(big, seed=0)
    lo_s, hi_s = bootstrap_ci(x, seed=0)
    assert hi_b - lo_b < hi_s - lo_s
    # No spread, no width.
    assert bootstrap_ci(np.ones(10)) == (1.0, 1.0)


def test_bootstrap_coverage_near_nominal():
    """A 90% interval should cover the true win rate in roughly 90% of repeated experiments."""
    rng = np.random.default_rng(0)
    p, n, reps = 0.65, 80, 300
    covered = 0
    for i in range(reps):
        x = rng.binomial(1, p, size=n).astype(float)
        lo, hi = bootstrap_ci(x, confidence=0.9, n_boot=1000, seed=i)
        covered += lo <= p <= hi
    assert 0.82 <= covered / reps <= 0.96


def test_length_controlled_win_rate():
    outcomes = ["win"] * 7 + ["loss"] * 3
    same = [50] * 10
    # No length difference: the length term is uninformative and LC equals the plain rate.
    assert length_controlled_win_rate(outcomes, same, same) == pytest.approx(0.7, abs=1e-3)
    # Every win came with a much longer answer: part of the advantage is attributed to length.
    longer_when_winning = [200] * 7 + [50] * 3
    lc = length_controlled_win_rate(outcomes, longer_when_winning, same)
    assert lc < 0.7
    assert math.isnan(length_controlled_win_rate(["unjudged"], [1], [1]))

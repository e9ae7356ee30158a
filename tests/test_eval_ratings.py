"""Bradley-Terry ratings (lib/evaluate/ratings.py): synthetic verdicts with known strengths are
recovered; the MM fit equals a re-implementation of Chatbot Arena's logistic-regression
`compute_mle_elo` (FastChat serve/monitor/elo_analysis.py) on the same battles.

Run: .venv/bin/python -m pytest -q tests/test_eval_ratings.py
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from lib.evaluate import ratings as R
from tests.test_eval_agreement import unreadable_text

TRUE = {"base": 0.0, "alpaca": 0.4, "vicuna": 0.8, "text-davinci-003": 1.6}  # natural-log strengths


def _battles(n: int, seed: int = 1, tie_rate: float = 0.0) -> list[tuple[str, str, str, str]]:
    """n independent battles, each on its own question."""
    rng = np.random.default_rng(seed)
    names = list(TRUE)
    out = []
    for q in range(n):
        i, j = rng.choice(len(names), size=2, replace=False)
        a, b = names[i], names[j]
        if rng.random() < tie_rate:
            out.append((a, b, "tie", f"q{q}"))
            continue
        p = 1 / (1 + math.exp(-(TRUE[a] - TRUE[b])))
        out.append((a, b, "win" if rng.random() < p else "loss", f"q{q}"))
    return out


def test_recovers_order_and_log_strength_gaps():
    battles = _battles(6000)
    rows = R.ratings(battles, prior=0.0, n_boot=100, seed=0)
    assert [r["model"] for r in rows] == ["text-davinci-003", "vicuna", "alpaca", "base"]
    theta = {r["model"]: (r["elo"] - R.INIT) * math.log(10) / R.SCALE for r in rows}
    for m in TRUE:
        # Gaps to base in natural-log units, within sampling error of 6000 battles.
        assert theta[m] - theta["base"] == pytest.approx(TRUE[m] - TRUE["base"], abs=0.12), m
    assert np.mean([r["elo"] for r in rows]) == pytest.approx(R.INIT)
    for r in rows:
        lo, hi = r["ci"]
        assert lo < r["elo"] < hi and hi - lo < 60
    # 400 Elo points are 10:1 odds.
    assert R.expected_win(1400, 1000) == pytest.approx(10 / 11)


def test_ties_count_half_and_the_prior_keeps_a_clean_sweep_finite():
    even = R.ratings([("a", "b", "tie", f"q{i}") for i in range(10)] + [("a", "b", "win", "q10"), ("a", "b", "loss", "q11")],
                     n_boot=0)
    assert even[0]["elo"] == pytest.approx(even[1]["elo"])
    sweep = R.ratings([("a", "b", "win", f"q{i}") for i in range(5)], prior=1.0, n_boot=50)
    # 5 wins + 1 virtual game split 0.5/0.5: p_a/p_b = 5.5/0.5 = 11 -> 400*log10(11) = 416.6 points apart.
    assert sweep[0]["elo"] - sweep[1]["elo"] == pytest.approx(400 * math.log10(11), abs=0.01)
    assert all(math.isfinite(x) for r in sweep for x in r["ci"])


def _fastchat_mle_elo(battles, scale=400, base=10, init=1000):
    """compute_mle_elo re-implemented from FastChat's published source: every battle twice, a tie
    as one win each way, logistic regression without intercept on +/-log(base) features (there:
    sklearn LogisticRegression(fit_intercept=False, penalty=None); here: scipy BFGS on the same loss)."""
    from scipy.optimize import minimize

    models = sorted({m for a, b, *_ in battles for m in (a, b)})
    idx = {m: i for i, m in enumerate(models)}
    doubled = battles + battles
    X = np.zeros((len(doubled), len(models)))
    Y = np.zeros(len(doubled))
    for k, (a, b, o, _) in enumerate(doubled):
        X[k, idx[a]], X[k, idx[b]] = math.log(base), -math.log(base)
        first_half = k < len(battles)
        Y[k] = 1.0 if o == "win" or (o == "tie" and first_half) else 0.0

    def loss(w):
        z = X @ w
        return np.sum(np.logaddexp(0, z) - Y * z)

    def grad(w):
        return X.T @ (1 / (1 + np.exp(-(X @ w))) - Y)

    w = minimize(loss, np.zeros(len(models)), jac=grad, method="BFGS", options={"gtol": 1e-9}).x
    return {m: scale * w[i] + init for m, i in idx.items()}


def test_equals_chatbot_arenas_logistic_regression():
    battles = _battles(800, seed=7, tie_rate=0.2)
    ours = {r["model"]: r["elo"] for r in R.ratings(battles, prior=0.0, n_boot=0)}
    theirs = _fastchat_mle_elo(battles)
    for m in TRUE:
        assert ours[m] == pytest.approx(theirs[m], abs=0.05), m


def test_battles_follow_the_swap_rule_and_votes(tmp_path):
    def j(q, order, sa, sb, a="tuned", b="base"):
        return {"kind": "pairwise", "question_id": q, "model_a": a, "model_b": b, "order": order, "judge": "J",
                "status": "ok", "score_a": sa, "score_b": sb, "category": "x"}
    judgments = [j("q1", "ab", 8, 2), j("q1", "ba", 7, 3), j("q2", "ab", 8, 2), j("q2", "ba", 2, 8),
                 j("q3", "ab", 8, 2), j("q1", "ab", 1, 9, b="davinci"), j("q1", "ba", 2, 9, b="davinci")]
    assert R.battles_from_judgments(judgments, "J") == [("tuned", "base", "win", "q1"), ("tuned", "base", "tie", "q2"),
                                                        ("tuned", "davinci", "loss", "q1")]
    assert R.battles_from_votes([{"model_a": "x", "model_b": "y", "outcome": "tie", "question_id": "q7"}]) == \
        [("x", "y", "tie", "q7")]
    with pytest.raises(ValueError, match="question_id"):
        R.ratings([("x", "y", "win")])
    fig = R.ratings_chart(R.ratings(_battles(200), n_boot=20))
    assert unreadable_text(fig) == []
    fig.savefig(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 5000
    assert R.ratings([]) == []

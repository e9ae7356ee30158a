"""From judgments to numbers a reader can trust: swap-consistent verdicts, win rates with
bootstrap intervals, a length-controlled win rate, and the judge's order bias.

The swap rule (Zheng et al., 2023, after Vicuna's one-order scoring proved fragile): each
pair is judged twice, once with each model as Assistant 1. A model wins a question only if
it wins in BOTH orders; a verdict that flips with the order is a tie. A question whose
judgment is missing in either order (unparsed or failed) is "unjudged": it is counted and
shown, not folded into the win rate.

Win rate = (wins + ties / 2) / judged. Its interval is a percentile bootstrap over
questions (the unit that was sampled), with a fixed seed so the same judgments always give
the same interval.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np

OUTCOME_VALUE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def order_verdict(rec: dict | None) -> str | None:
    """'a', 'b' or 'tie' from one parsed pairwise record (scores already mapped to a and b)."""
    if not rec or rec.get("status") != "ok":
        return None
    if rec["score_a"] > rec["score_b"]:
        return "a"
    if rec["score_a"] < rec["score_b"]:
        return "b"
    return "tie"


def combine_orders(v_ab: str | None, v_ba: str | None) -> tuple[str, bool | None]:
    """The swap rule: (outcome for model_a, consistent?). Outcome is win/loss/tie/unjudged."""
    if v_ab is None or v_ba is None:
        return "unjudged", None
    if v_ab == v_ba:
        return {"a": "win", "b": "loss", "tie": "tie"}[v_ab], True
    return "tie", False


def pair_verdicts(judgments: list[dict], model_a: str, model_b: str, judge: str | None = None) -> list[dict]:
    """One row per question for the pair (model_a, model_b), in first-seen order."""
    by_q: dict[str, dict[str, dict]] = defaultdict(dict)
    cats = {}
    for r in judgments:
        if r.get("kind") != "pairwise" or (judge and r.get("judge") != judge):
            continue
        if (r["model_a"], r["model_b"]) == (model_a, model_b):
            by_q[r["question_id"]][r["order"]] = r
            cats[r["question_id"]] = r.get("category", "general")
    rows = []
    for qid, orders in by_q.items():
        v_ab, v_ba = order_verdict(orders.get("ab")), order_verdict(orders.get("ba"))
        outcome, consistent = combine_orders(v_ab, v_ba)
        rows.append({"question_id": qid, "category": cats[qid], "verdict_ab": v_ab, "verdict_ba": v_ba,
                     "outcome": outcome, "consistent": consistent})
    return rows


def bootstrap_ci(values, stat=np.mean, *, n_boot: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat` over `values` (resampled with replacement)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    if stat is np.mean:
        stats = x[idx].mean(axis=1)
    else:
        stats = np.array([stat(x[i]) for i in idx])
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def win_rate(outcomes: list[str], *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Counts, win rate (ties count half) and its bootstrap interval; unjudged are only counted."""
    counts = Counter(outcomes)
    values = [OUTCOME_VALUE[o] for o in outcomes if o in OUTCOME_VALUE]
    n = len(values)
    rate = float(np.mean(values)) if n else math.nan
    lo, hi = bootstrap_ci(values, n_boot=n_boot, confidence=confidence, seed=seed)
    return {"win": counts["win"], "tie": counts["tie"], "loss": counts["loss"], "unjudged": counts["unjudged"],
            "judged": n, "win_rate": rate, "ci": [lo, hi], "confidence": confidence}


def length_controlled_win_rate(outcomes: list[str], len_a: list[float], len_b: list[float],
                               l2: float = 1.0, iters: int = 50) -> float:
    """Win rate with the length advantage regressed out (in the spirit of AlpacaEval 2.0 LC).

    Fits P(a beats b) = sigmoid(w0 + w1 * tanh(dlen / sd(dlen))) to the soft outcomes
    (win 1, tie 0.5, loss 0) by regularised Newton steps, then reports sigmoid(w0): the
    predicted win rate had both answers been the same length. With too few questions or no
    length spread the term carries no information and this equals the plain logit-mean."""
    pairs = [(OUTCOME_VALUE[o], la - lb) for o, la, lb in zip(outcomes, len_a, len_b) if o in OUTCOME_VALUE]
    if not pairs:
        return math.nan
    y = np.array([p[0] for p in pairs])
    d = np.array([p[1] for p in pairs], dtype=float)
    sd = d.std()
    x = np.tanh(d / sd) if sd > 0 else np.zeros_like(d)
    X = np.stack([np.ones_like(x), x], axis=1)
    w = np.zeros(2)
    reg = np.diag([1e-6, l2])  # shrink only the length coefficient; the intercept is the answer
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(X @ w)))
        grad = X.T @ (p - y) + reg @ w
        hess = X.T @ (X * (p * (1 - p))[:, None]) + reg
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(1 / (1 + np.exp(-w[0])))


def order_agreement(rows: list[dict]) -> dict:
    """How often the verdict survived the swap, and how often Assistant 1's slot won."""
    both = [r for r in rows if r["consistent"] is not None]
    consistent = sum(1 for r in both if r["consistent"])
    first_wins = second_wins = ties = 0
    for r in both:
        # Order ab: a sits first; order ba: b sits first.
        for v, first in ((r["verdict_ab"], "a"), (r["verdict_ba"], "b")):
            if v == "tie":
                ties += 1
            elif v == first:
                first_wins += 1
            else:
                second_wins += 1
    n_orders = 2 * len(both)
    return {"questions_with_both_orders": len(both), "consistent": consistent,
            "agreement": consistent / len(both) if both else math.nan,
            "first_position_wins": first_wins, "second_position_wins": second_wins, "order_ties": ties,
            "first_position_rate": first_wins / n_orders if n_orders else math.nan}


def mean_score(scores: list[float], *, n_boot: int = 2000, seed: int = 0) -> dict:
    lo, hi = bootstrap_ci(scores, n_boot=n_boot, seed=seed)
    return {"n": len(scores), "mean": float(np.mean(scores)) if scores else math.nan, "ci": [lo, hi]}


def single_summary(judgments: list[dict], judge: str | None = None) -> dict:
    """Mean 1-10 grade per model (all turns) with an interval, and per model per category."""
    per_model: dict[str, list[float]] = defaultdict(list)
    per_cat: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    unparsed: Counter = Counter()
    for r in judgments:
        if r.get("kind") != "single" or (judge and r.get("judge") != judge):
            continue
        if r.get("status") == "ok":
            per_model[r["model_a"]].append(r["score"])
            per_cat[r["model_a"]][r.get("category", "general")].append(r["score"])
        else:
            unparsed[r["model_a"]] += 1
    models = sorted(set(per_model) | set(unparsed))
    return {m: {**mean_score(per_model.get(m, [])), "not_graded": unparsed[m],
                "by_category": {c: float(np.mean(v)) for c, v in sorted(per_cat[m].items())}} for m in models}

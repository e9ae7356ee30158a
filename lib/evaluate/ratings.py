"""Ratings across many models from pairwise verdicts: Bradley-Terry strengths on the Elo
scale with bootstrap intervals, as Chatbot Arena reports them.

    battles = battles_from_judgments(judgments, judge=name) + battles_from_votes(votes)
    table = ratings(battles, n_boot=200)          # [{"model", "elo", "ci", "battles", ...}], best first
    fig = ratings_chart(table)

Model: P(i beats j) = p_i / (p_i + p_j). A tie counts as half a win for each side, as in
Chatbot Arena's `compute_mle_elo` (FastChat `serve/monitor/elo_analysis.py`, which doubles
every battle and turns a tie into one win each way). The maximum-likelihood strengths are
found with Hunter's (2004) MM iteration, p_i <- W_i / sum_j n_ij / (p_i + p_j), instead of
the original's logistic regression: same likelihood, same maximum, no scikit-learn
(tests/test_eval_ratings.py checks the two agree on the same battles). Ratings are
log-strengths on the Elo scale, elo_i = 1000 + 400 * log10(p_i), centred so their mean is
1000 (the original's regression from zero has the same centring).

One difference, on purpose: `prior` virtual games (split evenly into wins) between every
pair of models. With a handful of battles a model that won everything has an infinite MLE,
and two models that never met (directly or through others) have no defined gap; the prior
keeps both finite and pulls thin evidence toward "equal". prior=0 is the original MLE.
"""
from __future__ import annotations

import math

import numpy as np

from lib.evaluate import stats
from lib.evaluate.agreement import judged_pairs

SCALE, BASE, INIT = 400.0, 10.0, 1000.0
OUTCOME_SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def battles_from_judgments(judgments: list[dict], judge: str | None = None) -> list[tuple[str, str, str, str]]:
    """(model_a, model_b, outcome for model_a, question_id) per question of every judged pair (swap rule)."""
    out = []
    for a, b in judged_pairs(judgments, judge):
        out += [(a, b, r["outcome"], r["question_id"]) for r in stats.pair_verdicts(judgments, a, b, judge)
                if r["outcome"] in OUTCOME_SCORE]
    return out


def battles_from_votes(votes: list[dict]) -> list[tuple[str, str, str, str]]:
    """(model_a, model_b, outcome for model_a, question_id) per human vote."""
    return [(v["model_a"], v["model_b"], v["outcome"], v["question_id"]) for v in votes
            if v.get("outcome") in OUTCOME_SCORE]


def battle_columns(battles, index: dict[str, int]) -> np.ndarray:
    """Per battle, the flattened (k, k) points matrix then the (k, k) games matrix it adds:
    points[i, j] = what i scored against j (a tie is 0.5 each way), games[i, j] = battles
    between i and j. Their totals over battles are all Bradley-Terry needs."""
    k = len(index)
    i = np.array([index[a] for a, *_ in battles], dtype=int)
    j = np.array([index[b] for _, b, *_ in battles], dtype=int)
    score = np.array([OUTCOME_SCORE[o] for _, _, o, *_ in battles], dtype=float)
    rows = np.arange(len(battles))
    cols = np.zeros((len(battles), 2, k, k))
    cols[rows, 0, i, j] = score
    cols[rows, 0, j, i] = 1 - score
    cols[rows, 1, i, j] = 1
    cols[rows, 1, j, i] = 1
    return cols.reshape(len(battles), 2 * k * k)


def bradley_terry(wins: np.ndarray, games: np.ndarray, *, prior: float = 1.0, tol: float = 1e-10,
                  max_iter: int = 10000, start: np.ndarray | None = None) -> np.ndarray:
    """Log-strengths (natural log, mean 0) maximising the Bradley-Terry likelihood (MM steps).
    wins, games: (..., k, k); any leading axes (bootstrap resamples) are fitted at once.
    start: log-strengths to iterate from (the full data's fit, for its resamples: same maximum,
    a fraction of the steps)."""
    k = wins.shape[-1]
    off = 1 - np.eye(k)
    n = games + prior * off
    total = (wins + prior / 2 * off).sum(axis=-1)
    p = np.ones(wins.shape[:-1]) * (1.0 if start is None else np.exp(start))
    for _ in range(max_iter):
        denom = (n / (p[..., :, None] + p[..., None, :])).sum(axis=-1)
        new = np.where(denom > 0, total / np.where(denom > 0, denom, 1), p)
        new = np.maximum(new, 1e-300)  # a model with no points at all: strength -> 0, kept finite
        new /= np.exp(np.log(new).mean(axis=-1, keepdims=True))
        done = np.max(np.abs(np.log(new) - np.log(p)), initial=0.0) < tol
        p = new
        if done:
            break
    theta = np.log(p)
    return theta - theta.mean(axis=-1, keepdims=True)


def to_elo(theta: np.ndarray) -> np.ndarray:
    return INIT + SCALE * theta / math.log(BASE)


def ratings(battles: list[tuple[str, str, str, str]], *, prior: float = 1.0, n_boot: int = 200,
            confidence: float = 0.95, seed: int = 0) -> list[dict]:
    """One row per model, best first: Elo-scale rating, bootstrap interval, record.

    battles: (model_a, model_b, outcome for model_a, question_id). The interval resamples
    questions, every battle of a question together (several reviewers' votes and several
    pairs on one question share its difficulty; `stats.cluster_bootstrap`)."""
    if any(len(b) != 4 for b in battles):
        raise ValueError("a battle is (model_a, model_b, outcome, question_id): the question is what the bootstrap resamples")
    models = sorted({m for a, b, *_ in battles for m in (a, b)})
    if not models:
        return []
    index = {m: i for i, m in enumerate(models)}
    k = len(models)
    cols = battle_columns(battles, index)

    totals = cols.sum(axis=0).reshape(2, k, k)
    theta = bradley_terry(totals[0], totals[1], prior=prior)

    def elo_of_totals(t: np.ndarray) -> np.ndarray:
        t = t.reshape(*t.shape[:-1], 2, k, k)
        return to_elo(bradley_terry(t[..., 0, :, :], t[..., 1, :, :], prior=prior, start=theta))

    elo = to_elo(theta)
    lo, hi = stats.cluster_bootstrap(cols, [q for *_, q in battles], elo_of_totals, n_boot=n_boot,
                                     confidence=confidence, seed=seed)
    rows = [{"model": m, "elo": float(elo[i]), "ci": [float(lo[i]), float(hi[i])],
             "battles": int(totals[1, i].sum()), "points": float(totals[0, i].sum())} for m, i in index.items()]
    return sorted(rows, key=lambda r: -r["elo"])


def ratings_table(tables: dict[str, list[dict]]) -> list[dict]:
    """Rating tables side by side, one row per model: {"model", "<name>: rating", "<name>: battles"}
    for each named table (e.g. judge and people); "–" and 0 where a table did not rate the model."""
    rows: dict[str, dict] = {}
    for name, table in tables.items():
        for r in table:
            rows.setdefault(r["model"], {"model": r["model"]})
            rows[r["model"]][f"{name}: rating"] = stats.format_interval(r["elo"], r["ci"], ".0f")
            rows[r["model"]][f"{name}: battles"] = r["battles"]
    empty = {k: v for name in tables for k, v in ((f"{name}: rating", "–"), (f"{name}: battles", 0))}
    return [{"model": m, **empty, **row} for m, row in rows.items()]


def expected_win(elo_i: float, elo_j: float) -> float:
    """P(i beats j) implied by two ratings."""
    return 1 / (1 + BASE ** ((elo_j - elo_i) / SCALE))


def ratings_chart(rows: list[dict], title: str = "Bradley-Terry ratings (Elo scale, 95% bootstrap interval)"):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.5 * max(1, len(rows))))
    if not rows:
        ax.text(0.5, 0.5, "no pairwise verdicts yet", ha="center", va="center")
        ax.axis("off")
        return fig
    ys = list(range(len(rows)))[::-1]
    for y, r in zip(ys, rows):
        lo, hi = r["ci"]
        if not (math.isnan(lo) or math.isnan(hi)):
            ax.plot([lo, hi], [y, y], color="#555555", lw=2)
        ax.plot([r["elo"]], [y], "o", color="#2a9d8f", ms=8)
        ax.text(r["elo"], y + 0.22, f"{r['elo']:.0f}", ha="center", fontsize=9)
    ax.set_yticks(ys, [f"{r['model']} ({r['battles']})" for r in rows])
    ax.axvline(INIT, color="#bdbdbd", ls="--", lw=1)
    ax.set_xlabel("rating (1000 = average of these models; +400 = 10:1 odds)")
    ax.set_title(title, fontsize=10)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    fig.tight_layout()
    return fig

"""Ratings across many models from pairwise verdicts: Bradley-Terry strengths on the Elo
scale with bootstrap intervals, as Chatbot Arena reports them.

    battles = battles_from_judgments(judgments, judge=name) + battles_from_votes(votes)
    table = ratings(battles, n_boot=200)          # [{"model", "elo", "ci", "wins", ...}], best first
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

SCALE, BASE, INIT = 400.0, 10.0, 1000.0
OUTCOME_SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def battles_from_judgments(judgments: list[dict], judge: str | None = None) -> list[tuple[str, str, str]]:
    """(model_a, model_b, outcome for model_a) per question of every judged pair (swap rule)."""
    from lib.evaluate.agreement import judged_pairs

    out = []
    for a, b in judged_pairs(judgments, judge):
        out += [(a, b, r["outcome"]) for r in stats.pair_verdicts(judgments, a, b, judge) if r["outcome"] in OUTCOME_SCORE]
    return out


def battles_from_votes(votes: list[dict]) -> list[tuple[str, str, str]]:
    return [(v["model_a"], v["model_b"], v["outcome"]) for v in votes if v.get("outcome") in OUTCOME_SCORE]


def _encode(battles, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i = np.array([index[a] for a, _, _ in battles], dtype=int)
    j = np.array([index[b] for _, b, _ in battles], dtype=int)
    score = np.array([OUTCOME_SCORE[o] for _, _, o in battles], dtype=float)
    return i, j, score


def _matrices(i: np.ndarray, j: np.ndarray, score: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """wins[i, j]: points i scored against j (tie = 0.5); games[i, j]: battles between i and j."""
    wins, games = np.zeros((k, k)), np.zeros((k, k))
    np.add.at(wins, (i, j), score)
    np.add.at(wins, (j, i), 1 - score)
    np.add.at(games, (i, j), 1)
    np.add.at(games, (j, i), 1)
    return wins, games


def bradley_terry(wins: np.ndarray, games: np.ndarray, *, prior: float = 1.0, tol: float = 1e-10,
                  max_iter: int = 10000) -> np.ndarray:
    """Log-strengths (natural log, mean 0) maximising the Bradley-Terry likelihood (MM steps)."""
    k = wins.shape[0]
    off = 1 - np.eye(k)
    w = wins + prior / 2 * off
    n = games + prior * off
    total = w.sum(axis=1)
    p = np.ones(k)
    for _ in range(max_iter):
        denom = (n / (p[:, None] + p[None, :])).sum(axis=1)
        new = np.where(denom > 0, total / np.where(denom > 0, denom, 1), p)
        new = np.maximum(new, 1e-300)  # a model with no points at all: strength -> 0, kept finite
        new /= math.exp(np.log(new).mean())
        if np.max(np.abs(np.log(new) - np.log(p))) < tol:
            p = new
            break
        p = new
    theta = np.log(p)
    return theta - theta.mean()


def to_elo(theta: np.ndarray) -> np.ndarray:
    return INIT + SCALE * theta / math.log(BASE)


def ratings(battles: list[tuple[str, str, str]], *, prior: float = 1.0, n_boot: int = 200,
            confidence: float = 0.95, seed: int = 0) -> list[dict]:
    """One row per model, best first: Elo-scale rating, bootstrap interval over battles, record."""
    models = sorted({m for a, b, _ in battles for m in (a, b)})
    if not models:
        return []
    index = {m: i for i, m in enumerate(models)}
    bi, bj, bs = _encode(battles, index)
    k = len(models)
    wins, games = _matrices(bi, bj, bs, k)
    elo = to_elo(bradley_terry(wins, games, prior=prior))
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, k))
    for b in range(n_boot):
        take = rng.integers(0, len(bi), size=len(bi))  # battles resampled with replacement
        boots[b] = to_elo(bradley_terry(*_matrices(bi[take], bj[take], bs[take], k), prior=prior))
    alpha = (1 - confidence) / 2
    lo, hi = (np.quantile(boots, [alpha, 1 - alpha], axis=0) if n_boot else
              (np.full(len(models), math.nan), np.full(len(models), math.nan)))
    rows = []
    for m, i in index.items():
        rows.append({"model": m, "elo": float(elo[i]), "ci": [float(lo[i]), float(hi[i])],
                     "battles": int(games[i].sum()), "points": float(wins[i].sum())})
    return sorted(rows, key=lambda r: -r["elo"])


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

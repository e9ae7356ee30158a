"""How far to trust the judge: its verdicts against people's blind votes, and people against
each other, with the cost of narrowing the doubt.

    votes = review.load_votes(run_dir / "eval" / "human.jsonl")
    report = judge_vs_human(votes, judgments, judge=name)      # overall, by category, pairs, disagreements
    hh = human_vs_human(votes)                                  # when two reviewers voted on the same items

The measures follow the MT-bench paper (Zheng et al., 2023, section 4.2) and FastChat's
`llm_judge/compute_agreement.py`:

- every human vote is compared with the judge's verdict on the same item (question, pair);
  the judge's verdict is the swap-consistent one (`stats.combine_orders`): a verdict that
  flips with the answer order is a tie, a question missing either order is left out;
- "both bad" counts as a tie (the paper's "tie (bothbad)");
- raw agreement: the share of comparisons where both say the same (win, loss or tie);
- non-tie agreement (the paper's setup S2, ~85% for GPT-4 vs people): only comparisons
  where NEITHER side said tie;
- Cohen's kappa on the three labels: agreement beyond what the two label rates would
  give by chance, (p_o - p_e) / (1 - p_e);
- human vs human: every pair of votes by different reviewers on the same item.

Intervals are bootstraps over questions (`stats.cluster_bootstrap`, seeded): the votes of every
reviewer on one question are drawn together, because they share that question's difficulty;
resampling single votes instead made nominal 95% intervals cover the truth in only 79-90% of
simulated studies with three reviewers a question, resampling questions in 93-97%
(tests/test_eval_stats.py). With fewer than two questions there is no interval (nan).
"""
from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations
from statistics import NormalDist

import numpy as np

from lib.evaluate import stats

LABELS = ("win", "tie", "loss")


def cohen_kappa(x: list[str], y: list[str]) -> float:
    """Cohen's kappa of two raters' win/tie/loss labels on the same items; nan when chance agreement is 1."""
    return float(agreement_of_totals(agreement_columns(x, y).sum(axis=0))[2])


MEASURES = ("agreement", "non_tie_agreement", "kappa")


def agreement_columns(x: list[str], y: list[str]) -> np.ndarray:
    """Per compared pair of labels: one-hot x (3), one-hot y (3), same, non-tie, non-tie and
    same, 1 -- the sums every agreement measure is computed from (`agreement_of_totals`)."""
    lx = np.array([[a == k for k in LABELS] for a in x], dtype=float).reshape(-1, 3)
    ly = np.array([[b == k for k in LABELS] for b in y], dtype=float).reshape(-1, 3)
    same = (lx * ly).sum(axis=1)
    non_tie = (1 - lx[:, 1]) * (1 - ly[:, 1])
    return np.column_stack([lx, ly, same, non_tie, non_tie * same, np.ones(len(lx))])


def agreement_of_totals(t: np.ndarray) -> np.ndarray:
    """Column totals of `agreement_columns` -> (raw, non-tie, kappa) along the last axis; nan
    where undefined (nothing compared, no non-tie pair, or chance agreement 1)."""
    n, nt = t[..., 9], t[..., 7]
    with np.errstate(invalid="ignore", divide="ignore"):
        p_o = t[..., 6] / n
        p_e = (t[..., 0:3] * t[..., 3:6]).sum(axis=-1) / (n * n)
        kappa = np.where(p_e < 1 - 1e-12, (p_o - p_e) / (1 - p_e), math.nan)
        non_tie = np.where(nt > 0, t[..., 8] / np.where(nt > 0, nt, 1), math.nan)
    return np.stack([np.where(n > 0, p_o, math.nan), non_tie, np.where(n > 0, kappa, math.nan)], axis=-1)


def agreement_stats(x: list[str], y: list[str], groups=None, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Raw, non-tie and kappa agreement between label lists x and y, each with a bootstrap
    interval over `groups` (the question of each pair; default: each pair its own), so the
    votes several reviewers cast on one question are resampled together."""
    cols = agreement_columns(list(x), list(y))
    est = agreement_of_totals(cols.sum(axis=0))
    if len(cols):
        lo, hi = stats.cluster_bootstrap(cols, range(len(cols)) if groups is None else groups, agreement_of_totals,
                                         n_boot=n_boot, seed=seed)
    else:
        lo = hi = np.full(3, math.nan)
    out = {"n": len(cols), "non_tie_n": int(cols[:, 7].sum()) if len(cols) else 0}
    for k, (measure, ci) in enumerate(zip(MEASURES, ("agreement_ci", "non_tie_ci", "kappa_ci"))):
        out[measure] = float(est[k])
        out[ci] = [float(lo[k]), float(hi[k])]
    return out


def oriented(vote: dict, model_a: str, model_b: str) -> str | None:
    """The vote's outcome for model_a of the pair (model_a, model_b), whichever way it was stored."""
    if (vote["model_a"], vote["model_b"]) == (model_a, model_b):
        return vote["outcome"]
    if (vote["model_a"], vote["model_b"]) == (model_b, model_a):
        return {"win": "loss", "loss": "win", "tie": "tie"}[vote["outcome"]]
    return None


def judged_pairs(judgments: list[dict], judge: str | None = None) -> list[tuple[str, str]]:
    seen = []
    for r in judgments:
        if r.get("kind") == "pairwise" and (judge is None or r.get("judge") == judge):
            p = (r["model_a"], r["model_b"])
            if p not in seen:
                seen.append(p)
    return seen


def comparisons(votes: list[dict], judgments: list[dict], judge: str | None = None) -> list[dict]:
    """One row per human vote whose item the judge decided: the two labels side by side."""
    rows = []
    for a, b in judged_pairs(judgments, judge):
        verdicts = {r["question_id"]: r for r in stats.pair_verdicts(judgments, a, b, judge)}
        for v in votes:
            human = oriented(v, a, b)
            j = verdicts.get(v["question_id"])
            if human is None or j is None or j["outcome"] == "unjudged":
                continue
            rows.append({"question_id": v["question_id"], "category": v.get("category") or j["category"],
                         "model_a": a, "model_b": b, "reviewer": v["reviewer"], "human": human,
                         "judge": j["outcome"], "judge_orders": [j["verdict_ab"], j["verdict_ba"]],
                         "note": v.get("note", "")})
    return rows


def judge_vs_human(votes: list[dict], judgments: list[dict], judge: str | None = None, *,
                   n_boot: int = 2000, seed: int = 0) -> dict:
    rows = comparisons(votes, judgments, judge)
    by_cat = defaultdict(list)
    for r in rows:
        by_cat[r["category"]].append(r)
    pairs = []
    for a, b in judged_pairs(judgments, judge):
        mine = [r for r in rows if (r["model_a"], r["model_b"]) == (a, b)]
        if not mine:
            continue
        judge_by_q = {r["question_id"]: r["judge"] for r in mine}
        # Human win rate over every vote on the pair; the judge's over the same questions.
        pairs.append({"model_a": a, "model_b": b,
                      "human": stats.win_rate([r["human"] for r in mine], [r["question_id"] for r in mine],
                                              n_boot=n_boot, seed=seed),
                      "judge": stats.win_rate(list(judge_by_q.values()), list(judge_by_q), n_boot=n_boot, seed=seed)})
    return {"overall": _compare(rows, "human", "judge", n_boot=n_boot, seed=seed),
            "by_category": {c: _compare(rs, "human", "judge", n_boot=min(n_boot, 500), seed=seed)
                            for c, rs in sorted(by_cat.items())},
            "pairs": pairs,
            "disagreements": [r for r in rows if r["human"] != r["judge"]],
            "votes": len(votes), "compared": len(rows)}


def _compare(rows: list[dict], x: str, y: str, *, n_boot: int, seed: int) -> dict:
    """agreement_stats of rows' labels x and y, resampled by the rows' questions."""
    return agreement_stats([r[x] for r in rows], [r[y] for r in rows], [r["question_id"] for r in rows],
                           n_boot=n_boot, seed=seed)


def human_vs_human(votes: list[dict], *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Agreement between reviewers on the items two or more of them voted on: every pair of
    votes by different reviewers on one item, resampled by question (a question with three
    reviewers gives three pairs that stand or fall together)."""
    by_item = defaultdict(list)
    for v in votes:
        a, b = sorted((v["model_a"], v["model_b"]))
        by_item[(v["question_id"], a, b)].append((v["reviewer"], oriented(v, a, b)))
    rows, per_pair = [], defaultdict(list)
    for (qid, _, _), item_votes in by_item.items():
        for (r1, o1), (r2, o2) in combinations(sorted(item_votes), 2):
            if r1 == r2:
                continue
            rows.append({"question_id": qid, "first": o1, "second": o2})
            per_pair[(r1, r2)].append(rows[-1])
    return {"overall": _compare(rows, "first", "second", n_boot=n_boot, seed=seed),
            "reviewer_pairs": {f"{r1} / {r2}": _compare(rs, "first", "second", n_boot=min(n_boot, 500), seed=seed)
                               for (r1, r2), rs in sorted(per_pair.items())},
            "overlapping_items": sum(1 for vs in by_item.values() if len({r for r, _ in vs}) > 1)}


# ----------------------------------------------------------------------------- cost of trust
def votes_needed(p: float, half_width: float = 0.05, confidence: float = 0.95) -> int:
    """Votes for a +/- half_width interval on an agreement rate near p (normal approximation:
    n = z^2 p (1 - p) / h^2); p unknown (nan) -> 0.5, the worst case."""
    if p is None or math.isnan(p):
        p = 0.5
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return max(1, math.ceil(z * z * p * (1 - p) / (half_width * half_width)))


def cost_of_trust(report: dict, votes: list[dict], *, judge_usd: float, judged_items: int,
                  usd_per_hour: float, half_width: float = 0.05) -> dict:
    """Dollars per item judged by the LLM and per item reviewed by a person (median seconds
    per vote x the hourly rate in budgets.yaml), and the votes that would narrow the judge-human
    agreement interval to +/- half_width (non-tie votes for the non-tie measure)."""
    seconds = [float(v["seconds"]) for v in votes if v.get("seconds") is not None]
    median_s = float(np.median(seconds)) if seconds else math.nan
    ov = report["overall"]
    need_raw = votes_needed(ov["agreement"], half_width)
    need_non_tie = votes_needed(ov["non_tie_agreement"], half_width)
    # Non-tie comparisons are a share of all votes: that many more votes must be cast to get them.
    non_tie_share = ov["non_tie_n"] / ov["n"] if ov["n"] else math.nan
    votes_for_non_tie = math.ceil(need_non_tie / non_tie_share) if non_tie_share and non_tie_share > 0 else None
    per_review = median_s / 3600 * usd_per_hour if seconds else math.nan
    return {"judge_usd_per_item": judge_usd / judged_items if judged_items else math.nan,
            "judged_items": judged_items, "judge_usd": judge_usd,
            "median_seconds_per_vote": median_s, "usd_per_hour": usd_per_hour,
            "human_usd_per_item": per_review,
            "half_width": half_width,
            "votes_for_agreement": need_raw, "more_votes_for_agreement": max(0, need_raw - ov["n"]),
            "non_tie_votes_for_non_tie_agreement": need_non_tie, "votes_for_non_tie_agreement": votes_for_non_tie,
            "usd_for_agreement": need_raw * per_review if seconds else math.nan}


CHART_MEASURES = (("agreement", "agreement_ci", "raw agreement", (0, 1)),
                  ("non_tie_agreement", "non_tie_ci", "non-tie agreement", (0, 1)),
                  ("kappa", "kappa_ci", "Cohen's κ", (-1, 1)))
MT_BENCH_NON_TIE = 0.85  # GPT-4 vs experts on non-tie votes, about 85% (Zheng et al., 2023; docs/evaluation.md)


def agreement_chart(report: dict, human_human: dict | None = None):
    """Raw, non-tie and kappa agreement, one panel each, one row per group (overall, each
    category, people vs people): the estimate, its interval and its value. Rows, not columns,
    so ten categories still fit the notebook's width with their names readable."""
    import matplotlib.pyplot as plt

    groups = [("overall", report["overall"]), *report["by_category"].items()]
    if human_human and human_human["overall"]["n"]:
        groups.append(("people vs people", human_human["overall"]))
    fig, axes = plt.subplots(1, 3, figsize=(8.0, 1.3 + 0.38 * len(groups)), sharey=True)
    ys = list(range(len(groups)))[::-1]
    drawn = False
    for ax, (key, ci, title, xlim) in zip(axes, CHART_MEASURES):
        for y, (_, st) in zip(ys, groups):
            v, (lo, hi) = st[key], st[ci]
            if v is None or math.isnan(v):
                ax.text(sum(xlim) / 2, y, "n/a", ha="center", va="center", color="#999999", fontsize=7)
                continue
            if not (math.isnan(lo) or math.isnan(hi)):
                ax.plot([lo, hi], [y, y], color="#555555", lw=1.5, solid_capstyle="butt")
            ax.plot([v], [y], "o", color="#264653" if y != ys[0] else "#e76f51", ms=5)
            ax.annotate(f"{v:.2f}", (v, y), xytext=(0, 4), textcoords="offset points", ha="center", va="bottom",
                        fontsize=7)
            drawn = True
        ax.set_xlim(xlim[0] - 0.05, xlim[1] + 0.05)
        ax.set_ylim(-0.7, len(groups) - 0.3)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", color="#eeeeee")
    axes[1].axvline(MT_BENCH_NON_TIE, color="#bdbdbd", ls="--", lw=1)
    axes[2].axvline(0, color="#bdbdbd", lw=1)
    axes[0].set_yticks(ys, [f"{name} (n={st['n']})" for name, st in groups], fontsize=8)
    if not drawn:
        fig.text(0.5, 0.5, "no vote compared with a judge verdict yet: vote in the widget above", ha="center",
                 va="center", fontsize=9)
    fig.suptitle("Judge vs people: estimate and 95% interval over questions "
                 f"(dashed: GPT-4 vs people, non-tie, MT-bench: {MT_BENCH_NON_TIE})", fontsize=9)
    fig.tight_layout()
    return fig

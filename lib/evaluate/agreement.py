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

Intervals are percentile bootstraps over the compared votes (`stats.bootstrap_ci`, seeded).
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from itertools import combinations

import numpy as np

from lib.evaluate import stats

LABELS = ("win", "tie", "loss")


def cohen_kappa(x: list[str], y: list[str]) -> float:
    """Cohen's kappa of two raters' labels on the same items; nan when chance agreement is 1."""
    n = len(x)
    if n == 0:
        return math.nan
    p_o = sum(a == b for a, b in zip(x, y)) / n
    cx, cy = Counter(x), Counter(y)
    p_e = sum(cx[k] * cy[k] for k in set(cx) | set(cy)) / (n * n)
    return (p_o - p_e) / (1 - p_e) if p_e < 1 else math.nan


def agreement_stats(x: list[str], y: list[str], *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Raw, non-tie and kappa agreement between label lists x and y, each with an interval."""
    x, y = list(x), list(y)
    same = [float(a == b) for a, b in zip(x, y)]
    non_tie = [float(a == b) for a, b in zip(x, y) if a != "tie" and b != "tie"]
    idx = np.arange(len(x))
    xa, ya = np.array(x, dtype=object), np.array(y, dtype=object)
    kappa_ci = stats.bootstrap_ci(idx, lambda i: _nan_to(cohen_kappa(list(xa[i.astype(int)]), list(ya[i.astype(int)]))),
                                  n_boot=n_boot, seed=seed) if len(x) else (math.nan, math.nan)
    return {"n": len(x), "agreement": float(np.mean(same)) if same else math.nan,
            "agreement_ci": list(stats.bootstrap_ci(same, n_boot=n_boot, seed=seed)),
            "non_tie_n": len(non_tie), "non_tie_agreement": float(np.mean(non_tie)) if non_tie else math.nan,
            "non_tie_ci": list(stats.bootstrap_ci(non_tie, n_boot=n_boot, seed=seed)),
            "kappa": cohen_kappa(x, y), "kappa_ci": list(kappa_ci)}


def _nan_to(v: float, fill: float = 0.0) -> float:
    # A resample holding one label only has no chance-corrected agreement; count it as none.
    return fill if math.isnan(v) else v


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
                      "human": stats.win_rate([r["human"] for r in mine], n_boot=n_boot, seed=seed),
                      "judge": stats.win_rate(list(judge_by_q.values()), n_boot=n_boot, seed=seed)})
    return {"overall": agreement_stats([r["human"] for r in rows], [r["judge"] for r in rows], n_boot=n_boot, seed=seed),
            "by_category": {c: agreement_stats([r["human"] for r in rs], [r["judge"] for r in rs],
                                               n_boot=min(n_boot, 500), seed=seed) for c, rs in sorted(by_cat.items())},
            "pairs": pairs,
            "disagreements": [r for r in rows if r["human"] != r["judge"]],
            "votes": len(votes), "compared": len(rows)}


def human_vs_human(votes: list[dict], *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Agreement between reviewers on the items two or more of them voted on."""
    by_item = defaultdict(list)
    for v in votes:
        a, b = sorted((v["model_a"], v["model_b"]))
        by_item[(v["question_id"], a, b)].append((v["reviewer"], oriented(v, a, b)))
    x, y, per_pair = [], [], defaultdict(lambda: ([], []))
    for item_votes in by_item.values():
        for (r1, o1), (r2, o2) in combinations(sorted(item_votes), 2):
            if r1 == r2:
                continue
            x.append(o1), y.append(o2)
            per_pair[(r1, r2)][0].append(o1), per_pair[(r1, r2)][1].append(o2)
    return {"overall": agreement_stats(x, y, n_boot=n_boot, seed=seed),
            "reviewer_pairs": {f"{r1} / {r2}": agreement_stats(px, py, n_boot=min(n_boot, 500), seed=seed)
                               for (r1, r2), (px, py) in sorted(per_pair.items())},
            "overlapping_items": sum(1 for vs in by_item.values() if len({r for r, _ in vs}) > 1)}


# ----------------------------------------------------------------------------- cost of trust
def votes_needed(p: float, half_width: float = 0.05, confidence: float = 0.95) -> int:
    """Votes for a +/- half_width interval on an agreement rate near p (normal approximation:
    n = z^2 p (1 - p) / h^2); p unknown (nan) -> 0.5, the worst case."""
    from statistics import NormalDist

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


def agreement_chart(report: dict, human_human: dict | None = None):
    """Raw, non-tie and kappa per category and overall, with intervals; people vs people beside."""
    import matplotlib.pyplot as plt

    groups = [("overall", report["overall"]), *report["by_category"].items()]
    if human_human and human_human["overall"]["n"]:
        groups.append(("human vs human", human_human["overall"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(groups) + 2), 3.6))
    measures = (("agreement", "agreement_ci", "raw", "#264653"), ("non_tie_agreement", "non_tie_ci", "non-tie", "#2a9d8f"),
                ("kappa", "kappa_ci", "Cohen's κ", "#e9c46a"))
    width, labelled = 0.26, set()
    for k, (key, ci, label, color) in enumerate(measures):
        for g, (_, st) in enumerate(groups):
            v = st[key]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            lo, hi = st[ci]
            x = g + (k - 1) * width
            ax.bar(x, v, width, color=color, label=None if label in labelled else label)
            ax.text(x, max(v, 0) + 0.02, f"{v:.2f}", ha="center", fontsize=7)  # a 0 bar is still read
            labelled.add(label)
            if lo is not None and not (math.isnan(lo) or math.isnan(hi)):
                ax.plot([x, x], [lo, hi], color="#333333", lw=1.2)
    ax.set_xticks(range(len(groups)), [f"{name}\n(n={st['n']})" for name, st in groups], fontsize=8)
    ax.axhline(0.85, color="#bdbdbd", ls="--", lw=1)
    ax.text(len(groups) - 0.5, 0.86, "GPT-4 vs people, non-tie (MT-bench): ~0.85", ha="right", fontsize=7, color="#777777")
    ax.set_ylim(min(0, ax.get_ylim()[0]), 1.05)
    ax.set_ylabel("agreement / κ")
    ax.set_title("Judge vs people (95% bootstrap intervals)", fontsize=10)
    if labelled:
        ax.legend(fontsize=8, loc="lower left")
    else:
        ax.text(len(groups) / 2 - 0.5, 0.5, "no vote compared with a judge verdict yet: vote in the widget above",
                ha="center", va="center", fontsize=9)
    fig.tight_layout()
    return fig

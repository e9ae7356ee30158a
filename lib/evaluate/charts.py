"""The pictures a reader of 04_evaluate wants: who won (with how sure), where, and whether
the judge could be trusted to ignore answer order. Each function takes the results dict
of `lib.evaluate.results.summarize` and returns a matplotlib Figure (the notebook shows it
and saves it as PNG next to results.json).
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt

from lib.evaluate.stats import format_interval

COLORS = {"win": "#2a9d8f", "tie": "#bdbdbd", "loss": "#e76f51", "unjudged": "#ffffff"}


def win_tie_loss(results: dict):
    """Stacked win/tie/loss bars per opponent, with win rate, interval and answer lengths."""
    rows = results.get("pairwise", {}).get("pairs", [])
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.8 * max(1, len(rows))))
    if not rows:
        ax.text(0.5, 0.5, "no pairwise judgments", ha="center", va="center")
        ax.axis("off")
        return fig
    labels = []
    for i, r in enumerate(rows):
        total = max(1, r["win"] + r["tie"] + r["loss"] + r["unjudged"])
        left = 0.0
        for k in ("win", "tie", "loss", "unjudged"):
            frac = r[k] / total
            ax.barh(i, frac, left=left, color=COLORS[k], edgecolor="#555555", label=k if i == 0 else None)
            if r[k]:
                ax.text(left + frac / 2, i, str(r[k]), ha="center", va="center", fontsize=9)
            left += frac
        wr = r["win_rate"]
        lens = r.get("mean_length", {})
        note = "" if math.isnan(wr) else f"win rate {format_interval(wr, r['ci'], '.0%')}"
        if lens:
            note += f"   len {lens.get(r['model_a'], 0):.0f} vs {lens.get(r['model_b'], 0):.0f}"
        ax.text(1.02, i, note, va="center", fontsize=9)
        labels.append(f"{r['model_a']}\nvs {r['model_b']}")
    ax.set_yticks(range(len(rows)), labels)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of questions (verdict must survive swapping the answer order)")
    ax.legend(ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.set_title(f"Pairwise judge: {results.get('judge', {}).get('name', '')}", pad=28, fontsize=10)
    fig.tight_layout()
    return fig


def category_scores(results: dict):
    """Mean judge score (1-10) per category and model, as grouped bars."""
    table = results.get("category_scores", {})  # {model: {category: mean}}
    fig, ax = plt.subplots(figsize=(9, 3.5))
    models = sorted(table)
    cats = sorted({c for m in models for c in table[m]})
    if not cats:
        ax.text(0.5, 0.5, "no scores", ha="center", va="center")
        ax.axis("off")
        return fig
    width = 0.8 / len(models)
    for j, m in enumerate(models):
        xs = [i + j * width for i in range(len(cats))]
        ax.bar(xs, [table[m].get(c, 0.0) for c in cats], width=width, label=m)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cats))], cats, rotation=30, ha="right")
    ax.set_ylim(0, 10)
    ax.set_ylabel("mean score (1-10)")
    ax.set_title(f"Scores by category ({results.get('category_scores_source', '')})", fontsize=10)
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def order_agreement(results: dict):
    """Per pair: how many verdicts survived the swap, and how often the first slot won."""
    rows = results.get("pairwise", {}).get("pairs", [])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 1.5 + 0.6 * max(1, len(rows))))
    if not rows:
        for ax in (ax1, ax2):
            ax.axis("off")
        return fig
    labels = [f"{r['model_a']} vs {r['model_b']}" for r in rows]
    for i, r in enumerate(rows):
        ag = r["order_agreement"]
        both = ag["questions_with_both_orders"]
        ax1.barh(i, ag["consistent"], color=COLORS["win"], label="same verdict both orders" if i == 0 else None)
        ax1.barh(i, both - ag["consistent"], left=ag["consistent"], color=COLORS["loss"],
                 label="verdict flipped" if i == 0 else None)
        ax1.barh(i, r["unjudged"], left=both, color="#dddddd", label="unjudged" if i == 0 else None)
        n = ag["first_position_wins"] + ag["second_position_wins"] + ag["order_ties"]
        for k, (v, c) in enumerate(((ag["first_position_wins"], "#457b9d"), (ag["second_position_wins"], "#a8dadc"),
                                    (ag["order_ties"], COLORS["tie"]))):
            left = sum(x for x in (ag["first_position_wins"], ag["second_position_wins"])[:k])
            ax2.barh(i, v / n if n else 0, left=left / n if n else 0, color=c,
                     label=("Assistant 1 slot won", "Assistant 2 slot won", "tie")[k] if i == 0 else None)
    ax1.set_yticks(range(len(rows)), labels)
    ax1.set_xlabel("questions")
    ax1.set_title("Does the verdict survive the swap?", fontsize=10)
    ax1.legend(fontsize=8, frameon=False, loc="lower right")
    ax2.set_yticks(range(len(rows)), [""] * len(rows))
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("share of single-order judgments")
    ax2.set_title("Position bias", fontsize=10)
    ax2.legend(fontsize=8, frameon=False, loc="lower right")
    fig.tight_layout()
    return fig

"""The pictures people expect after generating: what was made, what was thrown away.

* verb-object donut (Alpaca's Figure: top root verbs, inner ring; their top objects, outer)
* length histograms of instruction / input / output
* rejection reasons
* ROUGE-L of each kept instruction to its nearest earlier instruction (seeds included)

Each function saves one PNG (lib/figures.save) and returns its path; nothing here decides anything.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt  # no matplotlib.use(): switching backends inside Jupyter hides later figures

from lib.core.figures import save
from lib.generate.filters import count_words
from lib.generate.novelty import NoveltyFilter
from lib.generate.verbs import verb_object


def nearest_scores(seed_instructions: list[str], instructions: list[str], threshold: float = 0.7) -> list[float]:
    """ROUGE-L F of each instruction to the most similar one before it (seeds first)."""
    f = NoveltyFilter(threshold=threshold)
    f.extend(seed_instructions)
    out = []
    for inst in instructions:
        best = f.most_similar(inst, k=1)
        out.append(best[0][0] if best else 0.0)
        f.extend([inst])
    return out


def verb_object_counts(instructions: list[str]) -> tuple[Counter, dict[str, Counter], int]:
    """(verb counts, object counts per verb, how many instructions had no verb-object form)."""
    verbs: Counter = Counter()
    objects: dict[str, Counter] = {}
    skipped = 0
    for inst in instructions:
        vo = verb_object(inst)
        if vo is None:
            skipped += 1
            continue
        verb, obj = vo
        verbs[verb] += 1
        objects.setdefault(verb, Counter())[obj or "(none)"] += 1
    return verbs, objects, skipped


def verb_object_chart(instructions: list[str], path: Path, *, top_verbs: int = 20, top_objects: int = 4) -> Path:
    verbs, objects, skipped = verb_object_counts(instructions)
    fig, ax = plt.subplots(figsize=(8, 8))
    if not verbs:
        ax.text(0.5, 0.5, "no imperative instructions to parse", ha="center", va="center")
        ax.axis("off")
    else:
        top = verbs.most_common(top_verbs)
        cmap = plt.get_cmap("tab20")
        inner_sizes, inner_labels, inner_colors = [], [], []
        outer_sizes, outer_labels, outer_colors = [], [], []
        for i, (verb, n) in enumerate(top):
            color = cmap(i % 20)
            inner_sizes.append(n)
            inner_labels.append(verb)
            inner_colors.append(color)
            objs = objects[verb].most_common(top_objects)
            rest = n - sum(c for _, c in objs)
            for obj, c in objs:
                outer_sizes.append(c)
                outer_labels.append(obj)
                outer_colors.append((*color[:3], 0.6))
            if rest:
                outer_sizes.append(rest)
                outer_labels.append("")
                outer_colors.append((*color[:3], 0.25))
        ax.pie(outer_sizes, radius=1.0, labels=outer_labels, colors=outer_colors, labeldistance=1.03,
               textprops={"fontsize": 7}, wedgeprops={"width": 0.35, "edgecolor": "white"})
        ax.pie(inner_sizes, radius=0.65, labels=inner_labels, colors=inner_colors, labeldistance=0.55,
               textprops={"fontsize": 8}, wedgeprops={"width": 0.35, "edgecolor": "white"})
        ax.set(aspect="equal")
        parsed = sum(verbs.values())
        ax.set_title(f"Top {len(top)} root verbs (inner) and their top objects (outer)\n"
                     f"{parsed} instructions with a verb-object form; {skipped} questions/other left out")
    fig.tight_layout()
    return save(fig, path)


def length_histograms(records: list[dict], path: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, key in zip(axes, ("instruction", "input", "output")):
        vals = [count_words(r.get(key, "")) for r in records]
        if key == "input":
            empty = sum(1 for v in vals if v == 0)
            vals = [v for v in vals if v > 0]
            ax.set_title(f"input length (words; {empty} without input)")
        else:
            ax.set_title(f"{key} length (words)")
        if vals:
            ax.hist(vals, bins=min(30, max(5, len(vals) // 3)), color="#4c72b0")
        ax.set_xlabel("words")
    axes[0].set_ylabel("records")
    fig.tight_layout()
    return save(fig, path)


def rejection_chart(kept: int, rejected: dict[str, int], path: Path) -> Path:
    items = sorted(rejected.items(), key=lambda kv: kv[1])
    labels = [k for k, _ in items] + ["kept"]
    values = [v for _, v in items] + [kept]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(labels) + 1.2))
    ax.barh(labels, values, color=["#c44e52"] * len(items) + ["#55a868"])
    for y, v in enumerate(values):
        ax.text(v, y, f" {v}", va="center", fontsize=8)
    ax.set_xlabel("candidate tasks")
    ax.set_title("Where the generated tasks went")
    fig.tight_layout()
    return save(fig, path)


def nearest_histogram(scores: list[float], path: Path, threshold: float = 0.7) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if scores:
        ax.hist(scores, bins=20, range=(0, 1), color="#8172b2")
    ax.axvline(threshold, color="#c44e52", linestyle="--", label=f"novelty threshold {threshold}")
    ax.set_xlabel("ROUGE-L F to the most similar earlier instruction (seeds included)")
    ax.set_ylabel("kept instructions")
    ax.legend()
    fig.tight_layout()
    return save(fig, path)

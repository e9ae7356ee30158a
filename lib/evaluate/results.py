"""Everything 04_evaluate reports, in one JSON-ready dict (written as eval/results.json).

    results = summarize(qset, specs, answers, judgments, pairs=[("tuned", "base")], judge=...,
                        spent_usd=ctx.ledger.spent("evaluation"))

results["scorecard"] puts the run beside published figures (lib/data/published_results.yaml)
when the question set and judge make them comparable, and says why not otherwise.

Each win rate sits beside both models' mean answer lengths and a length-controlled win rate,
because judges favour longer answers; the judge's identity (configured name, served
model, prompt versions) is recorded so results from different judges never mix unnoticed.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict

import numpy as np

from lib.evaluate import prompts, stats
from lib.evaluate.metrics import answer_length
from lib.evaluate.questions import QuestionSet
from lib.evaluate.scorecard import scorecard


def mean_lengths(answers: dict[str, dict[str, list[str]]], question_ids: list[str]) -> dict[str, float]:
    out = {}
    for model, by_q in answers.items():
        lens = [sum(answer_length(a) for a in by_q[q]) for q in question_ids if q in by_q]
        out[model] = float(np.mean(lens)) if lens else math.nan
    return out


def pair_summary(judgments: list[dict], answers: dict, model_a: str, model_b: str, judge: str, *,
                 n_boot: int = 2000, seed: int = 0) -> dict:
    rows = stats.pair_verdicts(judgments, model_a, model_b, judge)
    outcomes = [r["outcome"] for r in rows]
    qids = [r["question_id"] for r in rows]
    wr = stats.win_rate(outcomes, qids, n_boot=n_boot, seed=seed)
    len_a = [sum(answer_length(a) for a in answers[model_a][q]) for q in qids]
    len_b = [sum(answer_length(a) for a in answers[model_b][q]) for q in qids]
    by_cat = defaultdict(list)
    for r in rows:
        by_cat[r["category"]].append(r)
    return {"model_a": model_a, "model_b": model_b, **wr,
            "length_controlled_win_rate": stats.length_controlled_win_rate(outcomes, len_a, len_b),
            "mean_length": {model_a: float(np.mean(len_a)) if len_a else math.nan,
                            model_b: float(np.mean(len_b)) if len_b else math.nan},
            "order_agreement": stats.order_agreement(rows),
            "by_category": {c: stats.win_rate([r["outcome"] for r in rs], [r["question_id"] for r in rs], n_boot=200,
                                              seed=seed) for c, rs in sorted(by_cat.items())},
            "questions": rows}


def category_scores(judgments: list[dict], judge: str) -> tuple[dict, str]:
    """{model: {category: mean score}} from single grades, else from pairwise scores."""
    single = [r for r in judgments if r["kind"] == "single" and r["judge"] == judge and r["status"] == "ok"]
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    if single:
        for r in single:
            table[r["model_a"]][r["category"]].append(r["score"])
        source = "single-answer grades"
    else:
        for r in judgments:
            if r["kind"] == "pairwise" and r["judge"] == judge and r["status"] == "ok":
                table[r["model_a"]][r["category"]].append(r["score_a"])
                table[r["model_b"]][r["category"]].append(r["score_b"])
        source = "pairwise scores, both orders"
    return {m: {c: float(np.mean(v)) for c, v in sorted(cats.items())} for m, cats in table.items()}, source


def summarize(qset: QuestionSet, specs: list, answers: dict, judgments: list[dict], *, pairs: list[tuple[str, str]],
              judge: dict, spent_usd: float | None = None, reference_metrics: dict | None = None,
              n_boot: int = 2000, seed: int = 0) -> dict:
    qids = [q.question_id for q in qset.questions]
    relevant = [r for r in judgments if r["question_id"] in set(qids)]
    name = judge["name"]
    status = defaultdict(lambda: defaultdict(int))
    for r in relevant:
        if r["judge"] == name:
            status[r["kind"]][r["status"]] += 1
    served = sorted({r.get("served_model") for r in relevant if r["judge"] == name and r.get("served_model")})
    results = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "question_set": qset.name, "questions": len(qids),
        "categories": sorted({q.category for q in qset.questions}),
        "models": [s.public() for s in specs],
        "judge": {**judge, "served_models": served, "pairwise_prompt": prompts.PAIRWISE_VERSION,
                  "single_prompt": prompts.SINGLE_VERSION},
        "judgment_status": {k: dict(v) for k, v in status.items()},
        "mean_length": mean_lengths(answers, qids),
        "pairwise": {"pairs": [pair_summary(relevant, answers, a, b, name, n_boot=n_boot, seed=seed)
                               for a, b in pairs] if status.get("pairwise") else []},
        "single": stats.single_summary(relevant, name) if status.get("single") else {},
        "reference_metrics": reference_metrics or {},
        "evaluation_usd": spent_usd,
    }
    results["category_scores"], results["category_scores_source"] = category_scores(relevant, name)
    # Beside the published figures only when question set and judge make them comparable;
    # otherwise each row carries the reason (scorecard.py, lib/data/published_results.yaml).
    results["scorecard"] = scorecard(results)
    results["headline"] = headline(results)
    return results


def headline(results: dict) -> str:
    parts = []
    for p in results["pairwise"]["pairs"]:
        if p["judged"]:
            parts.append(f"{p['model_a']} vs {p['model_b']}: win rate {stats.format_interval(p['win_rate'], p['ci'], '.0%')} "
                         f"({p['win']}W/{p['tie']}T/{p['loss']}L, {p['unjudged']} unjudged)")
        else:
            parts.append(f"{p['model_a']} vs {p['model_b']}: no question judged consistently "
                         f"({p['unjudged']} unjudged)")
    for m, s in results["single"].items():
        if s["n"]:
            parts.append(f"{m}: mean grade {s['mean']:.1f}/10")
    if results.get("evaluation_usd") is not None:
        parts.append(f"${results['evaluation_usd']:.4f} spent")
    return "; ".join(parts) or "nothing judged"


def pairs_for(candidate: str, model_names: list[str]) -> list[tuple[str, str]]:
    """The candidate against every other model."""
    return [(candidate, m) for m in model_names if m != candidate]

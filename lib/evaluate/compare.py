"""Does preference tuning help? Base, SFT and DPO answer the same questions; every two are judged.

    specs = parse_models({"base": "embedded", "sft": "{run_dir}/model", "dpo": "{run_dir}/model_dpo"},
                         {"sft": "alpaca", "dpo": "alpaca"}, run_dir)
    judge = Judge(judge_ep, JudgeSettings(), ledger=ledger, guard=guard, phase="preference")
    res = compare_models(run_dir / "prefer" / "compare", specs, qset, judge, GenerationSettings(), ledger=ledger)
    res["pairwise"]["pairs"]   # per pair: win rate [95% CI], length-controlled win rate, order agreement
    res["ratings"]             # Bradley-Terry over the models (Elo scale), intervals over questions
    res["scorecard"]           # beside Zephyr's dSFT -> dDPO direction, or the reason why not

Nothing new is computed here: answers come from `lib.evaluate.answers` (the evaluation's
prompts, cached per model and question), verdicts from the swap-checked judge in both orders,
the win rates and the length-controlled win rate from `lib.evaluate.results.summarize` (so
the same code as 04_evaluate), the ratings from `lib.evaluate.ratings` (one Bradley-Terry
fit, bootstrap over questions: the unit that varies), the scorecard from
`lib.evaluate.scorecard`. Files under `out_dir`: answers.jsonl and judgments.jsonl
(append-only, resumable) and results.json (derived, rewritten whole).
"""
from __future__ import annotations

from pathlib import Path

from lib.core.files import atomic_write_json
from lib.evaluate.answers import GenerationSettings, ModelSpec, answer_table, generate_answers
from lib.evaluate.judge import Judge, is_pinned, judgments_store
from lib.evaluate.questions import QuestionSet
from lib.evaluate.ratings import battles_from_judgments, ratings
from lib.evaluate.results import summarize
from lib.evaluate.stats import format_interval


def every_pair(names: list[str]) -> list[tuple[str, str]]:
    """Each later model against each earlier one, latest first: [c, b, a] -> (c, b), (c, a), (b, a)."""
    later_first = names[::-1]
    return [(a, b) for i, a in enumerate(later_first) for b in later_first[i + 1:]]


def judge_info(judge: Judge) -> dict:
    """What results.json records about the judge (the scorecard reads it)."""
    ep = judge.ep
    return {"name": judge.name, "base_url": "local" if ep.is_local else ep.base_url, "model": ep.model,
            "local": ep.is_local, "pinned": is_pinned(judge.name), "max_tokens": judge.settings.max_tokens,
            "parse_retries": judge.settings.parse_retries, "demonstration": judge.settings.demonstration}


def compare_models(out_dir: str | Path, specs: list[ModelSpec], qset: QuestionSet, judge: Judge,
                   gen: GenerationSettings, *, ledger=None, guard=None, n_boot: int = 2000,
                   rating_prior: float = 1.0, seed: int = 0) -> dict:
    """Answers, both-order verdicts of every pair, win rates and ratings; writes results.json."""
    out = Path(out_dir)
    answers = answer_table(generate_answers(specs, qset, out / "answers.jsonl", gen, ledger=ledger, guard=guard,
                                            phase=judge.phase, progress=False))  # charged to the judge's phase
    pairs = every_pair([s.name for s in specs])
    store = judgments_store(out / "judgments.jsonl")
    judge.run(judge.pairwise_jobs(qset.questions, answers, pairs, store), store)
    records = store.records()
    spent = ledger.spent(judge.phase) if ledger is not None else None
    results = summarize(qset, specs, answers, records, pairs=pairs, judge=judge_info(judge), spent_usd=spent,
                        n_boot=n_boot, seed=seed)
    results["ratings"] = ratings(battles_from_judgments(records, judge.name), prior=rating_prior,
                                 n_boot=n_boot, seed=seed)
    atomic_write_json(out / "results.json", results)
    return results


def pairwise_rows(results: dict) -> list[dict]:
    """The comparison's pairs as people read them: win rates with their interval, "–" where no
    question had a verdict (not a NaN), mean answer length per side in tokens."""
    rows = []
    for p in results["pairwise"]["pairs"]:
        lc = p["length_controlled_win_rate"]
        rows.append({"pair": f"{p['model_a']} vs {p['model_b']}", "win": p["win"], "tie": p["tie"], "loss": p["loss"],
                     "unjudged": p["unjudged"], "win rate [95% CI]": format_interval(p["win_rate"], p["ci"]),
                     "LC win rate": format_interval(lc, None),
                     "mean length": ", ".join(f"{m} {v:.0f}" for m, v in (p["mean_length"] or {}).items())})
    return rows

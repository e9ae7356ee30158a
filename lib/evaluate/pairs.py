"""Preference pairs from the project's own pieces: k sampled answers, the swap-checked judge, human votes.

    specs = parse_models({"sft": "{run_dir}/model"}, {"sft": "alpaca"}, run_dir)   # or an endpoint: spec
    judge = Judge(judge_ep, JudgeSettings(), ledger=ledger, guard=guard, phase="preference")
    summary = build_pairs(run_dir / "prefer", specs[0], questions, judge, PairSettings(k=4),
                          ledger=ledger, guard=guard, votes=load_votes(run_dir / "eval" / "human.jsonl"),
                          answers=answer_table(...))
    summary["funnel"]   # {"sampled": .., "judged": .., "consistent": .., "kept": ..}

1. Sample. For each prompt (a question's first turn) the SFT model answers k times, through
   the same path evaluation answers it (lib/evaluate/answers.py): a checkpoint in-process on
   `prompt_ids` (the ids training masked and inference sends), or an OpenAI-compatible
   endpoint through `lib.core.client.chat` -- at `temperature` instead of greedy, so the k
   answers differ. `samples.jsonl` keeps one line per (question, sample).
2. Judge. Every two distinct answers to one prompt are judged in both orders by the existing
   pairwise judge (`lib.evaluate.judge.Judge`; the sampled answers are its "models" s0..s{k-1}),
   into `judgments.jsonl`. Identical answers are not sent (a judge can only call them a tie).
3. Keep. The swap rule (`lib.evaluate.stats.combine_orders`): a pair becomes (chosen, rejected)
   only when both orders prefer the same answer. A tie in both orders and a verdict that flips
   with the order are counted and dropped; a pair missing a readable verdict in either order
   is "unjudged".
4. Human votes (`eval/human.jsonl`, lib/evaluate/review.py) join as pairs of their own,
   `source: human`: per (question, model pair) the majority of the votes, ties dropped; the
   answers are the evaluation's (`eval/answers.jsonl`).

Append-only and resumable like generation: samples and judgments are `JsonlStore`s written one
line per call, so a re-run pays for nothing twice; `pairs.jsonl` and `summary.json` are derived
from them and rewritten whole. Every call is charged to the budget phase "preference" and, with
a guard, its worst case is held first (`lib.budget.guard.hold`): a cap stops the work before it
could be crossed, and what was paid for is kept.
"""
from __future__ import annotations

import hashlib
import json
import itertools
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from lib.budget.guard import hold, refuse_unpriced
from lib.core.client import chat, make_client
from lib.core.errors import BudgetExceeded, UserError
from lib.core.files import atomic_write, atomic_write_json, read_jsonl
from lib.core.formats import turns_to_messages
from lib.core.model import load_for_inference
from lib.evaluate import prompts
from lib.evaluate.answers import GenerationSettings, ModelSpec, generate_batch
from lib.evaluate.judge import Judge, judgments_store, pair_texts
from lib.evaluate.questions import Question
from lib.evaluate.stats import pair_verdicts
from lib.evaluate.store import JsonlStore

PHASE = "preference"
SAMPLE_KEY = ("question_id", "sample")
FUNNEL = ("sampled", "judged", "consistent", "kept")


@dataclass
class PairSettings:
    k: int = 2  # answers sampled per prompt; every two distinct ones are judged
    temperature: float = 1.0  # sampling temperature (> 0: k greedy answers would be one answer)
    max_new_tokens: int = 64
    batch_size: int = 8  # prompts per batch for an in-process checkpoint
    seed: int = 0  # sample i of a prompt batch is drawn with seed + i

    def check(self) -> None:
        if self.k < 2:
            raise UserError(f"k={self.k}: a pair needs at least 2 answers per prompt, use k >= 2")
        if not self.temperature > 0:
            raise UserError(f"temperature={self.temperature}: sampled answers need a temperature > 0, e.g. 1.0")
        if self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens={self.max_new_tokens}: use at least 1")


def sample_name(i: int) -> str:
    return f"s{i}"


# ----------------------------------------------------------------------------- 1. sample
def sample_with_hf(spec: ModelSpec, todo: list[tuple[Question, int]], store: JsonlStore, settings: PairSettings,
                   ledger=None) -> None:
    """Answer every (question, sample) in `todo` in-process, on the ids evaluation prompts with."""
    import torch

    tok, model = load_for_inference(spec.path)
    gen = GenerationSettings(max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size,
                             temperature=settings.temperature)
    meter = ledger.meter(PHASE, purpose="prefer:sample", accelerator="cpu") if ledger else None
    if meter:
        meter.__enter__()
    try:
        by_sample = defaultdict(list)
        for q, i in todo:
            by_sample[i].append(q)
        for i, qs in sorted(by_sample.items()):
            for start in range(0, len(qs), settings.batch_size):
                batch = qs[start:start + settings.batch_size]
                torch.manual_seed(settings.seed + i)  # sample i is reproducible, resumed or not
                convs = [turns_to_messages(q.turns[:1], []) for q in batch]
                for q, (text, n) in zip(batch, generate_batch(tok, model, convs, gen, spec.prompt_format)):
                    store.append({"question_id": q.question_id, "sample": i, "model": spec.name, "answer": text,
                                  "tokens": n, "kind": "hf", "prompt_format": spec.prompt_format,
                                  "temperature": settings.temperature, "seed": settings.seed + i})
    finally:
        if meter:
            meter.__exit__(None, None, None)


def sample_with_endpoint(spec: ModelSpec, todo: list[tuple[Question, int]], store: JsonlStore,
                         settings: PairSettings, ledger=None, guard=None) -> None:
    """Answer every (question, sample) in `todo` through the endpoint, each call held against the cap."""
    ep = spec.endpoint()
    client = make_client(ep)
    refuse_unpriced(ep.billed_as, guard.prices if guard is not None else None)
    for q, i in todo:
        messages = [{"role": "user", "content": q.turns[0]}]
        with hold(guard, ep.billed_as, [messages], settings.max_new_tokens):
            text, resp = chat(client, ep, messages, ledger=ledger, phase=PHASE, purpose="prefer:sample",
                              max_tokens=settings.max_new_tokens, temperature=settings.temperature,
                              seed=settings.seed + i)
        usage = getattr(resp, "usage", None)
        store.append({"question_id": q.question_id, "sample": i, "model": spec.name, "answer": text.strip(),
                      "tokens": getattr(usage, "completion_tokens", None), "kind": "endpoint",
                      "served_model": getattr(resp, "model", ""), "temperature": settings.temperature,
                      "seed": settings.seed + i})


def sample_answers(spec: ModelSpec, questions: list[Question], store: JsonlStore, settings: PairSettings,
                   ledger=None, guard=None) -> int:
    """k answers per question that `store` lacks; returns how many were added."""
    todo = [(q, i) for q in questions for i in range(settings.k) if not store.done((q.question_id, i))]
    if not todo:
        return 0
    if spec.kind == "hf":
        sample_with_hf(spec, todo, store, settings, ledger)
    elif spec.kind == "endpoint":
        sample_with_endpoint(spec, todo, store, settings, ledger, guard)
    else:
        raise UserError(f"model {spec.name!r} is premade: preference pairs sample from a checkpoint or an endpoint")
    return len(todo)


# ----------------------------------------------------------------------------- 2. judge
def sample_table(store: JsonlStore, k: int) -> dict[str, dict[str, list[str]]]:
    """answers[s<i>][question_id] = [answer]: the sampled answers as the judge's "models"."""
    out: dict[str, dict[str, list[str]]] = {}
    for rec in store.records():
        if rec["sample"] < k:
            out.setdefault(sample_name(rec["sample"]), {})[rec["question_id"]] = [rec["answer"]]
    return out


def candidate_pairs(questions: list[Question], table: dict, k: int) -> tuple[dict[str, list], Counter]:
    """Per question, the (s_i, s_j) pairs worth judging: both sampled, answers differ."""
    todo: dict[str, list] = {}
    counts: Counter = Counter()
    for q in questions:
        for a, b in itertools.combinations([sample_name(i) for i in range(k)], 2):
            if q.question_id not in table.get(a, {}) or q.question_id not in table.get(b, {}):
                continue
            counts["sampled"] += 1
            if table[a][q.question_id] == table[b][q.question_id]:
                counts["identical"] += 1
                continue
            todo.setdefault(q.question_id, []).append((a, b))
    return todo, counts


def judge_pairs(judge: Judge, questions: list[Question], table: dict, todo: dict[str, list],
                store: JsonlStore) -> None:
    """Both orders of every candidate pair, one question at a time (so a cap stops between calls)."""
    for q in questions:
        if q.question_id in todo:
            judge.run(judge.pairwise_jobs([q], table, todo[q.question_id], store), store)


# ----------------------------------------------------------------------------- 3. keep
def pair_id(source: str, question_id: str, chosen: str, rejected: str) -> str:
    return hashlib.sha256("\0".join((source, question_id, chosen, rejected)).encode()).hexdigest()[:16]


def margin(judgments: list[dict], qid: str, a: str, b: str, judge: str) -> float | None:
    """The smaller score gap of the two orders: how sure the judge was of this pair."""
    gaps = [abs(r["score_a"] - r["score_b"]) for r in judgments
            if r.get("kind") == "pairwise" and r.get("status") == "ok" and r["judge"] == judge
            and (r["question_id"], r["model_a"], r["model_b"]) == (qid, a, b)]
    return min(gaps) if len(gaps) == 2 else None


def judged_pairs(questions: list[Question], table: dict, todo: dict[str, list], judgments: list[dict],
                 judge: str, counts: Counter) -> list[dict]:
    """Pairs kept by the swap rule; counts judged / consistent / tie / inconsistent / unjudged."""
    prompts = {q.question_id: q.turns[0] for q in questions}
    pairs = []
    for a, b in sorted({p for ps in todo.values() for p in ps}):
        for row in pair_verdicts(judgments, a, b, judge):
            qid = row["question_id"]
            if qid not in todo or (a, b) not in todo[qid]:
                continue
            if row["outcome"] == "unjudged":
                counts["unjudged"] += 1
                continue
            counts["judged"] += 1
            if not row["consistent"]:
                counts["inconsistent"] += 1
                continue
            counts["consistent"] += 1
            if row["outcome"] == "tie":
                counts["tie"] += 1
                continue
            win, lose = (a, b) if row["outcome"] == "win" else (b, a)
            counts["kept"] += 1
            pairs.append({"id": pair_id("judge", qid, win, lose), "question_id": qid, "source": "judge",
                          "prompt": [{"role": "user", "content": prompts[qid]}],
                          "chosen": table[win][qid][0], "rejected": table[lose][qid][0],
                          "chosen_from": win, "rejected_from": lose, "judge": judge,
                          "margin": margin(judgments, qid, a, b, judge)})
    return pairs


def judge_view(pair: dict, judgments: list[dict], question: Question) -> list[dict]:
    """A kept judge pair as the judge saw it, one row per order: who sat where, the user turn it
    was sent (the system prompt is `prompts.PAIRWISE_SYSTEM`, and with `demonstration` a worked
    example came first), its reply and the two scores as shown (Assistant 1, Assistant 2)."""
    text = {pair["chosen_from"]: pair["chosen"], pair["rejected_from"]: pair["rejected"]}
    rows = []
    for r in judgments:
        if (r.get("kind") != "pairwise" or r.get("question_id") != pair["question_id"] or r.get("judge") != pair.get("judge")
                or {r.get("model_a"), r.get("model_b")} != set(text)):
            continue
        first, second = r["assistant_1"], r["assistant_2"]
        q, a1, a2 = pair_texts(question, [text[first]], [text[second]])
        rows.append({"order": r["order"], "assistant_1": first, "assistant_2": second,
                     "prompt": prompts.pairwise_messages(q, a1, a2)[-1]["content"], "reply": r.get("reply"),
                     "scores": r.get("scores"), "status": r["status"]})
    return sorted(rows, key=lambda row: row["order"])


# ----------------------------------------------------------------------------- 4. human votes
def human_pairs(votes: list[dict], answers: dict[str, dict[str, list[str]]], questions: list[Question],
                counts: Counter) -> list[dict]:
    """One pair per (question, model pair) whose votes have a majority; ties and unknown items dropped."""
    prompts = {q.question_id: q.turns[0] for q in questions}
    tally: dict[tuple, Counter] = defaultdict(Counter)
    for v in votes:
        tally[(v["question_id"], v["model_a"], v["model_b"])][v.get("outcome")] += 1
    pairs = []
    for (qid, a, b), c in tally.items():
        counts["human_items"] += 1
        if qid not in prompts or qid not in answers.get(a, {}) or qid not in answers.get(b, {}):
            counts["human_unknown"] += 1
            continue
        if c["win"] == c["loss"]:
            counts["human_tie"] += 1
            continue
        win, lose = (a, b) if c["win"] > c["loss"] else (b, a)
        counts["human_kept"] += 1
        pairs.append({"id": pair_id("human", qid, win, lose), "question_id": qid, "source": "human",
                      "prompt": [{"role": "user", "content": prompts[qid]}],
                      "chosen": answers[win][qid][0], "rejected": answers[lose][qid][0],
                      "chosen_from": win, "rejected_from": lose, "votes": dict(c)})
    return pairs


# ----------------------------------------------------------------------------- the whole step
def spent(ledger) -> dict:
    """What the preference phase's API calls and CPU/GPU time cost, and on the reference model."""
    if ledger is None:
        return {"usd": 0.0, "usd_reference": 0.0}
    recs = ledger.records(phase=PHASE)
    return {"usd": sum(float(r.get("usd") or 0) for r in recs),
            "usd_reference": sum(float(r.get("usd_reference") or 0) for r in recs)}


def build_pairs(out_dir: str | Path, spec: ModelSpec, questions: list[Question], judge: Judge,
                settings: PairSettings, *, ledger=None, guard=None, votes: list[dict] | None = None,
                answers: dict | None = None, vote_questions: list[Question] | None = None) -> dict:
    """Sample, judge, keep; writes samples.jsonl, judgments.jsonl (append-only), pairs.jsonl and
    summary.json (derived) under `out_dir`. Returns the summary: the funnel, the drops, the cost.
    `vote_questions`: the questions the human votes were cast on (04_evaluate's), when the pairs'
    prompts are another set (default: `questions`)."""
    settings.check()
    if not questions:
        raise UserError("no questions to sample for: pass a question set with at least one question")
    if judge.phase != PHASE:
        raise UserError(f"the judge charges phase {judge.phase!r}: make it with Judge(..., phase='preference')")
    out = Path(out_dir)
    t0, stopped = time.time(), None
    samples = JsonlStore(out / "samples.jsonl", SAMPLE_KEY)
    judgments = judgments_store(out / "judgments.jsonl")
    try:
        sample_answers(spec, questions, samples, settings, ledger, guard)
    except BudgetExceeded as e:
        stopped = f"sampling: {e}"
    table = sample_table(samples, settings.k)
    todo, counts = candidate_pairs(questions, table, settings.k)
    if stopped is None:
        try:
            judge_pairs(judge, questions, table, todo, judgments)
        except BudgetExceeded as e:
            stopped = f"judging: {e}"
    pairs = judged_pairs(questions, table, todo, judgments.records(), judge.name, counts)
    pairs += human_pairs(votes or [], answers or {}, vote_questions or questions, counts)
    atomic_write(out / "pairs.jsonl", "".join(_jsonl(p) for p in pairs))
    cost = spent(ledger)
    kept = len(pairs)
    summary = {"funnel": {k: counts.get(k, 0) for k in FUNNEL}, "counts": dict(counts), "pairs": kept,
               "by_source": dict(Counter(p["source"] for p in pairs)), "answers": len(samples),
               "settings": asdict(settings), "model": spec.public(), "judge": judge.name, **cost,
               "usd_per_kept_pair": cost["usd"] / kept if kept else None,
               "usd_reference_per_kept_pair": cost["usd_reference"] / kept if kept else None,
               "stopped_for_budget": stopped, "seconds": round(time.time() - t0, 2)}
    atomic_write_json(out / "summary.json", summary)
    return summary


def read_pairs(path: str | Path) -> list[dict]:
    return list(read_jsonl(path))


def _jsonl(rec: dict) -> str:
    return json.dumps(rec, ensure_ascii=False) + "\n"


def funnel_chart(summary: dict, title: str = "Preference pairs: sampled -> judged -> consistent -> kept"):
    """Bars of the funnel (candidate pairs at each stage), the cost per kept pair in the title."""
    import matplotlib.pyplot as plt

    funnel = summary["funnel"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(list(funnel), list(funnel.values()), color=["#bbbbbb", "#9ecae1", "#6baed6", "#2171b5"])
    for x, v in enumerate(funnel.values()):
        ax.text(x, v, str(v), ha="center", va="bottom")
    per = summary.get("usd_per_kept_pair")
    ref = summary.get("usd_reference_per_kept_pair")
    cost = "no pair kept" if per is None else f"${per:.4f} per kept pair (on the reference model: ${ref:.4f})"
    ax.set_title(f"{title}\n{cost}", fontsize=9)
    ax.set_ylabel("pairs of answers")
    return fig

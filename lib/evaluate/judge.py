"""LLM-as-a-judge: pairwise (Vicuna rules, both orders) and single-answer (MT-bench) grading.

    store = judgments_store(run_dir / "eval" / "judgments.jsonl")
    judge = Judge(ep, JudgeSettings(max_tokens=96), ledger=ctx.ledger, guard=guard)
    report = judge.pairwise(questions, answers, [("tuned", "base")], store)
    report = judge.single(questions, answers, ["tuned", "base"], store)

Every (question, model_a, model_b, order, judge) -- or (question, model, turn, judge) for
single grading -- is one line in an append-only JSONL written right after its call, so a
re-run neither repeats a paid call nor writes a duplicate. A reply whose scores cannot be
read is asked again (`parse_retries` more times, at a higher temperature so the judge does
not repeat itself), and if it still cannot be read it is recorded with status "unparsed"
and counted in the report -- never silently dropped. A call that fails on the network is
recorded with status "error" and tried again by the next run. Every call goes through
`lib.core.client.chat` into the ledger (phase "evaluation"), and with a `BudgetGuard` the worst
case of each paid call is reserved before it is made.

The judge is pinned: each record carries the configured judge name, the model the server
says it served (`response.model`, e.g. a dated snapshot), its `system_fingerprint`, and the
prompt version. Pass a dated snapshot name (e.g. gpt-4o-2024-08-06), not an alias.
"""
from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lib.budget.guard import hold, refuse_unpriced, worst_case_usd
from lib.core.client import chat, make_client
from lib.core.errors import BudgetExceeded, UserError
from lib.core.model import model_fingerprint
from lib.evaluate import prompts
from lib.evaluate.parse import parse_pair, parse_rating
from lib.evaluate.questions import Question
from lib.evaluate.store import JsonlStore

JUDGMENT_KEY = ("kind", "question_id", "model_a", "model_b", "order", "turn", "judge")
ORDERS = ("ab", "ba")  # ab: model_a is Assistant 1; ba: model_b is Assistant 1
DONE_STATUSES = ("ok", "unparsed")
_DATED = re.compile(r"(\d{4}-\d{2}-\d{2}|\d{8}|-\d{4}$|@[0-9a-f]{6,})")


def judgments_store(path: str | Path) -> JsonlStore:
    return JsonlStore(path, JUDGMENT_KEY, is_done=lambda r: r.get("status") in DONE_STATUSES)


def judge_name(ep) -> str:
    """A stable name for the judge: the model id, or for a local checkpoint its dir + fingerprint."""
    p = Path(ep.model)
    if ep.is_local and p.is_dir():
        return f"{p.name}@{model_fingerprint(p)[:8]}"
    return ep.model


def is_pinned(name: str) -> bool:
    """True when the judge's name carries a version (date or hash), i.e. it cannot drift."""
    return bool(_DATED.search(name))


@dataclass
class JudgeSettings:
    max_tokens: int = 96
    parse_retries: int = 2
    retry_temperature: float = 0.7
    concurrency: int = 1  # the embedded server answers one request at a time
    retry_unparsed: bool = False  # a re-run also re-asks replies recorded as unparsed
    max_consecutive_errors: int = 3  # then stop: the endpoint is down, not flaky
    demonstration: bool = False  # pairwise: show one worked example first (for tiny judges, see prompts.py)


def pair_texts(q: Question, ans_1: list[str], ans_2: list[str]) -> tuple[str, str, str]:
    """Question and the two answers as the pairwise prompt shows them (multi-turn: all turns)."""
    if len(q.turns) == 1:
        return q.turns[0], ans_1[0], ans_2[0]
    question = "\n\n".join(f"Turn {i + 1}: {t}" for i, t in enumerate(q.turns))
    fmt = lambda ans: "\n\n".join(f"Turn {i + 1}: {a}" for i, a in enumerate(ans))  # noqa: E731
    return question, fmt(ans_1), fmt(ans_2)


class Judge:
    def __init__(self, ep, settings: JudgeSettings | None = None, *, ledger=None, guard=None, name: str | None = None,
                 phase: str = "evaluation"):
        self.ep = ep
        self.phase = phase  # the budget phase its calls are charged to (preference pairs: "preference")
        self.settings = settings or JudgeSettings()
        self.ledger = ledger
        self.guard = guard
        self.name = name or judge_name(ep)
        self.client = make_client(ep)  # a remote judge without a key fails here, in one line
        refuse_unpriced(ep.billed_as, guard.prices if guard is not None else None)
        self._errors = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ one call
    def worst_case_usd(self, requests: list[list[dict]], *, batch: bool = False) -> float:
        """What `requests` (each a list of messages) can cost at most: lib.budget.guard's one bound."""
        prices = self.guard.prices if self.guard is not None else None
        return worst_case_usd(self.ep.billed_as, requests, self.settings.max_tokens, batch=batch, prices=prices)

    def _call(self, messages: list[dict], temperature: float, purpose: str):
        with hold(self.guard, self.ep.billed_as, [messages], self.settings.max_tokens):
            return chat(self.client, self.ep, messages, ledger=self.ledger, phase=self.phase,
                        purpose=purpose, max_tokens=self.settings.max_tokens, temperature=temperature)

    def _ask(self, messages: list[dict], parse, purpose: str, repair: str, first: tuple | None = None) -> dict:
        """Ask, re-asking unparseable replies; returns the record fields (status, parsed, replies, ...).

        A retry shows the judge its unreadable reply and asks for the format again (this
        works on every server, unlike sampling flags), at `retry_temperature` so a judge
        that honours temperature does not repeat itself word for word. `first` is a
        (reply, response) already obtained elsewhere (a Batch API result)."""
        import openai

        replies, usage, served, fingerprint = [], [0, 0], "", None
        for attempt in range(1 + self.settings.parse_retries):
            temperature = 0.0 if attempt == 0 else self.settings.retry_temperature
            asked = messages if attempt == 0 else prompts.repair_messages(messages, replies[-1], repair)
            if attempt == 0 and first is not None:
                text, resp = first
            else:
                try:
                    text, resp = self._call(asked, temperature, purpose)
                except BudgetExceeded:
                    raise
                except (openai.APIError, ValueError) as e:  # ValueError: a garbled JSON body
                    with self._lock:
                        self._errors += 1
                        if self._errors >= self.settings.max_consecutive_errors:
                            raise UserError(f"the judge at {self.ep.base_url} failed {self._errors} calls in a row "
                                            f"(last: {type(e).__name__}: {str(e)[:120]}): check the endpoint, then "
                                            "re-run to resume; finished judgments are kept") from None
                    return {"status": "error", "error": f"{type(e).__name__}: {str(e)[:300]}", "replies": replies}
                with self._lock:
                    self._errors = 0
            replies.append(text)
            served = _get(resp, "model") or served
            fingerprint = _get(resp, "system_fingerprint") or fingerprint
            u = _get(resp, "usage")
            if u:
                usage[0] += _get(u, "prompt_tokens") or 0
                usage[1] += _get(u, "completion_tokens") or 0
            parsed = parse(text)
            if parsed is not None:
                return {"status": "ok", "parsed": parsed, "replies": replies, "served_model": served,
                        "system_fingerprint": fingerprint, "prompt_tokens": usage[0], "completion_tokens": usage[1]}
        return {"status": "unparsed", "parsed": None, "replies": replies, "served_model": served,
                "system_fingerprint": fingerprint, "prompt_tokens": usage[0], "completion_tokens": usage[1]}

    def _due(self, store: JsonlStore, key: tuple) -> bool:
        rec = store.get(key)
        if rec is None or rec.get("status") == "error":
            return True
        return rec.get("status") == "unparsed" and self.settings.retry_unparsed

    # ------------------------------------------------------------------ jobs
    def pairwise_jobs(self, questions: list[Question], answers: dict[str, dict[str, list[str]]],
                      pairs: list[tuple[str, str]], store: JsonlStore) -> list[Job]:
        """Every (question, pair, order) still to judge."""
        jobs = []
        for q in questions:
            for a, b in pairs:
                for m in (a, b):
                    if q.question_id not in answers.get(m, {}):
                        raise UserError(f"no answer from {m} to {q.question_id}: generate answers before judging")
                for order in ORDERS:
                    if not self._due(store, ("pairwise", q.question_id, a, b, order, None, self.name)):
                        continue
                    first, second = (a, b) if order == "ab" else (b, a)
                    question, ans_1, ans_2 = pair_texts(q, answers[first][q.question_id], answers[second][q.question_id])
                    messages = prompts.pairwise_messages(question, ans_1, ans_2)
                    version = prompts.PAIRWISE_VERSION
                    if self.settings.demonstration:
                        messages, version = prompts.with_demonstration(messages), version + "+demo"
                    base = {"kind": "pairwise", "question_id": q.question_id, "category": q.category, "model_a": a,
                            "model_b": b, "order": order, "turn": None, "judge": self.name, "assistant_1": first,
                            "assistant_2": second, "prompt_version": version}
                    jobs.append(Job(base, messages))
        return jobs

    def single_jobs(self, questions: list[Question], answers: dict[str, dict[str, list[str]]], models: list[str],
                    store: JsonlStore, reference_categories=prompts.REFERENCE_CATEGORIES) -> list[Job]:
        """Every (question, model, turn) still to grade; reference-guided where a reference helps."""
        jobs = []
        for q in questions:
            ref = q.reference if (q.reference and q.category in reference_categories) else None
            for m in models:
                if q.question_id not in answers.get(m, {}):
                    raise UserError(f"no answer from {m} to {q.question_id}: generate answers before judging")
                for turn in range(1, min(len(q.turns), 2) + 1):
                    if not self._due(store, ("single", q.question_id, m, None, None, turn, self.name)):
                        continue
                    base = {"kind": "single", "question_id": q.question_id, "category": q.category, "model_a": m,
                            "model_b": None, "order": None, "turn": turn, "judge": self.name,
                            "reference_guided": ref is not None, "prompt_version": prompts.SINGLE_VERSION}
                    jobs.append(Job(base, prompts.single_messages(q.turns, answers[m][q.question_id], turn=turn,
                                                                  reference=ref)))
        return jobs

    def finish(self, job: Job, store: JsonlStore, first: tuple | None = None) -> dict:
        """Ask (or take the batch's first reply), retry unreadable replies, write the record."""
        t0 = time.time()
        got = self._ask(job.messages, job.parse, job.purpose, job.repair, first=first)
        rec = {**job.base, **_common(got, t0)}
        if got["status"] == "ok":
            if job.kind == "pairwise":
                s1, s2 = got["parsed"]
                rec["scores"] = [s1, s2]  # as shown: Assistant 1, Assistant 2
                rec["score_a"], rec["score_b"] = (s1, s2) if rec["order"] == "ab" else (s2, s1)
            else:
                rec["score"] = got["parsed"]
        store.append(rec)
        return rec

    def run(self, jobs: list[Job], store: JsonlStore, progress=None) -> None:
        def work(job):
            self.finish(job, store)
            if progress is not None:
                progress.update(1)

        if progress is not None:
            progress.total = len(jobs)
        if self.settings.concurrency <= 1:
            for job in jobs:
                work(job)
            return
        with ThreadPoolExecutor(self.settings.concurrency) as pool:
            for f in [pool.submit(work, job) for job in jobs]:
                f.result()

    # ------------------------------------------------------------------ entry points
    def pairwise(self, questions: list[Question], answers: dict[str, dict[str, list[str]]],
                 pairs: list[tuple[str, str]], store: JsonlStore, progress=None) -> dict:
        """Judge every (question, pair) in both orders; returns counts by status."""
        self.run(self.pairwise_jobs(questions, answers, pairs, store), store, progress)
        return _status_counts(store, "pairwise", self.name)

    def single(self, questions: list[Question], answers: dict[str, dict[str, list[str]]], models: list[str],
               store: JsonlStore, progress=None) -> dict:
        """Grade every model's answer to every turn 1-10."""
        self.run(self.single_jobs(questions, answers, models, store), store, progress)
        return _status_counts(store, "single", self.name)


@dataclass
class Job:
    """One judgment to make: the record's key fields and the messages to send."""

    base: dict
    messages: list[dict]

    @property
    def kind(self) -> str:
        return self.base["kind"]

    @property
    def key(self) -> tuple:
        return tuple(self.base.get(f) for f in JUDGMENT_KEY)

    @property
    def parse(self):
        return parse_pair if self.kind == "pairwise" else parse_rating

    @property
    def repair(self) -> str:
        return prompts.PAIRWISE_REPAIR if self.kind == "pairwise" else prompts.SINGLE_REPAIR

    @property
    def purpose(self) -> str:
        return f"judge:{self.kind}"


def _get(obj, name: str):
    """Attribute of an SDK object or key of a dict (Batch API results are plain JSON)."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _common(got: dict, t0: float) -> dict:
    out = {k: got.get(k) for k in ("status", "served_model", "system_fingerprint", "prompt_tokens", "completion_tokens")}
    out["reply"] = got["replies"][-1] if got.get("replies") else None
    out["attempts"] = len(got.get("replies") or [])
    if len(got.get("replies") or []) > 1:
        out["earlier_replies"] = got["replies"][:-1]
    if got.get("error"):
        out["error"] = got["error"]
    out["seconds"] = round(time.time() - t0, 2)
    out["ts"] = time.time()
    return out


def _status_counts(store: JsonlStore, kind: str, judge: str) -> dict:
    counts = {"ok": 0, "unparsed": 0, "error": 0}
    for r in store.records():
        if r["kind"] == kind and r["judge"] == judge:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
    return counts

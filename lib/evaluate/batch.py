"""Judging through the Batch API: half price at OpenAI, results within the completion window.

    jobs = judge.pairwise_jobs(questions, answers, pairs, store)
    judge_batch(judge, jobs, store, run_dir / "eval" / "judge_batch.json")

The jobs go up as one JSONL file (`custom_id` = the judgment's key), one batch is created,
polled, and its output is fed through the same `Judge.finish` as online judging: parsed,
unreadable replies re-asked online with the format reminder, one record per judgment in
judgments.jsonl. Each batch reply is metered into the ledger at batch prices under a record
id derived from the batch and the key, so re-ingesting the same output never counts twice.

Resumable: the lifecycle is `lib.core.batchapi`'s (its module doc): `judge_batch.json` records
the uploaded file id, then the batch id, as soon as each exists; a re-run polls the same batch
instead of paying for a new one, and skips judgments already written. A request that failed
in the batch (batchapi's one rule for the output and error files) is written as an `error`
judgment, which is not done: a re-run asks it again. A batch that ended without completing
(expired, cancelled, failed) is ingested for what it delivered, then reported.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from lib.budget.guard import hold, hold_committed
from lib.core import batchapi
from lib.core.errors import UserError
from lib.evaluate.judge import Job, Judge
from lib.evaluate.store import JsonlStore


def _custom_id(job: Job) -> str:
    return json.dumps(list(job.key), separators=(",", ":"))


def _line(judge: Judge, job: Job) -> dict:
    body = {**judge.ep.extra, "model": judge.ep.model, "messages": job.messages,
            "max_tokens": judge.settings.max_tokens, "temperature": 0.0}
    return batchapi.chat_line(_custom_id(job), body)


def judge_batch(judge: Judge, jobs: list[Job], store: JsonlStore, state_path: str | Path, *,
                poll_s: float = 30.0, completion_window: str = "24h") -> dict:
    """Run `jobs` as one batch (or finish the batch a crashed run left); returns counts by status."""
    state_path = Path(state_path)
    state = batchapi.read_state(state_path)
    todo = {_custom_id(j): j for j in jobs if not store.done(j.key)}
    if state is None and not todo:
        return {}
    client = judge.client
    requests = [j.messages for j in todo.values()]
    if state is None:
        reservation = hold(judge.guard, judge.ep.billed_as, requests, judge.settings.max_tokens, batch=True)
        state = batchapi.begin(state_path, {"jobs": len(todo)})
    else:  # already submitted: held while we wait, if it still fits
        reservation = hold_committed(judge.guard, judge.ep.billed_as, requests, judge.settings.max_tokens)
    try:
        batch = batchapi.submit(client, state_path, state, state_path.with_name(f"{state_path.stem}-input.jsonl"),
                                lambda: [_line(judge, j) for j in todo.values()], metadata={"shear": "judge"},
                                completion_window=completion_window)
        batch = batchapi.wait(client, batch, poll_s, label="judge batch")
        counts = _ingest(judge, batch.id, batchapi.results(client, batch), todo, store)
    finally:
        reservation.release()
    batchapi.end(state_path)
    if batch.status != "completed":
        raise UserError(f"judge batch {batch.id} ended {batch.status} ({counts} ingested): "
                        "re-run to submit the remaining judgments")
    return counts


def _ingest(judge: Judge, batch_id: str, results: list[batchapi.BatchResult], todo: dict[str, Job],
            store: JsonlStore) -> dict:
    counts = {"ok": 0, "unparsed": 0, "error": 0}
    for r in results:
        job = todo.get(r.custom_id)
        if job is None or store.done(job.key):
            continue  # a judgment an earlier ingest already wrote
        if not r.ok:
            store.append({**job.base, "status": "error", "error": f"batch line failed: {r.error}",
                          "batch_id": batch_id, "ts": time.time()})
            counts["error"] += 1
            continue
        if judge.ledger is not None:
            judge.ledger.record_api(phase="evaluation", endpoint=judge.ep, usage=r.body.get("usage"),
                                    request_id=r.body.get("id"), batch=True, purpose=job.purpose,
                                    record_id=f"batch:{batch_id}:{r.custom_id}")
        text = r.body["choices"][0]["message"].get("content") or ""
        rec = judge.finish(job, store, first=(text, r.body))
        counts[rec["status"]] = counts.get(rec["status"], 0) + 1
    return counts

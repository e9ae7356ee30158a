"""Judging through the Batch API: half price at OpenAI, results within the completion window.

    jobs = judge.pairwise_jobs(questions, answers, pairs, store)
    judge_batch(judge, jobs, store, run_dir / "eval" / "judge_batch.json")

The jobs go up as one JSONL file (`custom_id` = the judgment's key), one batch is created,
polled, and its output is fed through the same `Judge.finish` as online judging: parsed,
unreadable replies re-asked online with the format reminder, one record per judgment in
judgments.jsonl. Each batch reply is metered into the ledger at batch prices under a record
id derived from the batch and the key, so re-ingesting the same output never counts twice.

Resumable: `judge_batch.json` (written atomically) records the uploaded file id, then the
batch id, as soon as each exists; a re-run polls the same batch instead of paying for a new
one, and skips judgments already written. The file is deleted once the output is ingested.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from lib.core.errors import UserError
from lib.evaluate.judge import Job, Judge
from lib.evaluate.store import JsonlStore
from lib.core.files import atomic_write_json, jsonl_line, read_json
from lib.generate.batch import poll_batch



def _custom_id(job: Job) -> str:
    return json.dumps(list(job.key), separators=(",", ":"))


def _line(judge: Judge, job: Job) -> dict:
    body = {**judge.ep.extra, "model": judge.ep.model, "messages": job.messages,
            "max_tokens": judge.settings.max_tokens, "temperature": 0.0}
    return {"custom_id": _custom_id(job), "method": "POST", "url": "/v1/chat/completions", "body": body}


def judge_batch(judge: Judge, jobs: list[Job], store: JsonlStore, state_path: str | Path, *,
                poll_s: float = 30.0, completion_window: str = "24h") -> dict:
    """Run `jobs` as one batch (or finish the batch a crashed run left); returns counts by status."""
    state_path = Path(state_path)
    state = read_json(state_path, default={})
    todo = {_custom_id(j): j for j in jobs if not store.done(j.key)}
    if not state and not todo:
        return {}
    client = judge.client
    reservation = None
    if not state:
        if judge.guard is not None and judge.ep.billed_as:
            reservation = judge.guard.reserve(judge.worst_case_usd([j.messages for j in todo.values()], batch=True))
        data = "".join(jsonl_line(_line(judge, j)) for j in todo.values()).encode("utf-8")
        uploaded = client.files.create(file=("judge_batch.jsonl", data), purpose="batch")
        state = {"input_file_id": uploaded.id, "jobs": len(todo)}
        atomic_write_json(state_path, state)
    try:
        batch = _submit(client, state, state_path, completion_window)
        batch = poll_batch(client, batch, poll_s, label="judge batch")
        if batch.status != "completed":
            raise UserError(f"judge batch {batch.id} ended {batch.status}: re-run to submit the remaining judgments "
                            f"(delete {state_path} first)")
        counts = _ingest(judge, client, batch, todo, store)
    finally:
        if reservation is not None:
            reservation.release()
    state_path.unlink(missing_ok=True)
    return counts


def _submit(client, state: dict, state_path: Path, completion_window: str):
    if state.get("batch_id"):
        return client.batches.retrieve(state["batch_id"])
    # A crash after the upload but before the batch id was saved: find the batch by its file.
    for b in client.batches.list(limit=100):
        if b.input_file_id == state["input_file_id"]:
            state["batch_id"] = b.id
            atomic_write_json(state_path, state)
            return b
    batch = client.batches.create(input_file_id=state["input_file_id"], endpoint="/v1/chat/completions",
                                  completion_window=completion_window, metadata={"shear": "judge"})
    state["batch_id"] = batch.id
    atomic_write_json(state_path, state)
    return batch


def _ingest(judge: Judge, client, batch, todo: dict[str, Job], store: JsonlStore) -> dict:
    counts = {"ok": 0, "unparsed": 0, "error": 0}
    rows = []
    for fid in (batch.output_file_id, batch.error_file_id):
        if fid:
            rows += [json.loads(x) for x in client.files.content(fid).text.splitlines() if x.strip()]
    for row in rows:
        job = todo.get(row.get("custom_id"))
        if job is None or store.done(job.key):
            continue  # a judgment an earlier ingest already wrote
        resp = row.get("response") or {}
        body = resp.get("body") or {}
        if resp.get("status_code") != 200 or not body.get("choices"):
            err = (row.get("error") or body.get("error") or {})
            store.append({**job.base, "status": "error", "error": f"batch line failed: {str(err)[:300]}",
                          "batch_id": batch.id, "ts": time.time()})
            counts["error"] += 1
            continue
        if judge.ledger is not None:
            judge.ledger.record_api(phase="evaluation", endpoint=judge.ep, usage=body.get("usage"),
                                    request_id=body.get("id"), batch=True, purpose=job.purpose,
                                    record_id=f"batch:{batch.id}:{row['custom_id']}")
        text = body["choices"][0]["message"].get("content") or ""
        rec = judge.finish(job, store, first=(text, body))
        counts[rec["status"]] = counts.get(rec["status"], 0) + 1
    return counts

"""Batch API mode: half price, results within the completion window (24 h at OpenAI).

One round: write the request JSONL (one chat request per line, `custom_id` = the
deterministic request id), upload it, create the batch, poll it, download the output
and feed every reply through the same `Generator.ingest` as the online mode (response
log -> ledger at batch prices -> records). Rounds repeat until the target is kept.

Resumable: `data/generate/batch.json` (written atomically) records the round's request
indices, then the uploaded file id, then the batch id, each as soon as it exists. After a
crash the next run polls the same batch instead of paying for a new one; if the crash fell
between the upload and the batch id being written, the batch is found again by its input
file id (`batches.list`). Replies already in the response log are skipped on re-ingest, so
a crash while ingesting loses and duplicates nothing. The state file is deleted only after
the whole output is ingested.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Iterator, Protocol

from lib.core.client import Endpoint, make_client
from lib.core.errors import BudgetExceeded, UserError
from lib.core.files import atomic_write_json, atomic_write_jsonl, read_json
from lib.generate.config import GenerateConfig
from lib.generate.prompt import Request

TERMINAL = {"completed", "failed", "expired", "cancelled"}


class Host(Protocol):
    """What the batch mode needs from the Generator (engine.py), and nothing else."""

    cfg: GenerateConfig
    ep: Endpoint
    work_dir: Path
    retries: dict

    def done(self) -> bool: ...
    def yield_so_far(self) -> tuple[int, int]: ...
    def pending_indices(self) -> Iterator[int]: ...
    def request(self, index: int) -> Request: ...
    def request_body(self, req: Request) -> dict: ...
    def is_logged(self, rid: str) -> bool: ...
    def worst_case_usd(self, req: Request, *, batch: bool = False) -> float: ...
    def reserve(self, usd: float): ...
    def budget_left(self) -> float: ...
    def ingest(self, req: Request, completion, *, batch: bool = False) -> float: ...
    def stop(self, reason: str) -> None: ...


def _plan_size(gen: Host) -> int:
    """How many requests the next batch needs to reach the target, from the yield so far."""
    kept, requests = gen.yield_so_far()
    remaining = gen.cfg.num_instructions_to_generate - kept
    per_request = (kept / requests) if requests and kept else max(1.0, gen.cfg.tasks_per_request * 0.25)
    return max(1, min(gen.cfg.batch_max_requests, math.ceil(remaining / per_request)))


def _line(gen: Host, req: Request) -> dict:
    body = gen.request_body(req)
    body.update(body.pop("extra_body", None) or {})  # a batch line is the raw JSON body
    return {"custom_id": req.id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def _reserve_fitting(gen: Host, reqs: list[Request]):
    """Reserve the worst case of as many requests as the cap allows; returns (reqs, reservation)."""
    costs = [gen.worst_case_usd(r, batch=True) for r in reqs]
    while reqs:
        try:
            return reqs, gen.reserve(sum(costs))
        except BudgetExceeded as e:
            if len(reqs) == 1:
                gen.stop(f"budget cap: {e}")
                return [], None
            # shrink to what fits: the guard knows what is left
            left = gen.budget_left()
            n = 0
            acc = 0.0
            for c in costs:
                if acc + c > left:
                    break
                acc += c
                n += 1
            n = min(n, len(reqs) - 1)
            if n == 0:
                gen.stop(f"budget cap: {e}")
                return [], None
            reqs, costs = reqs[:n], costs[:n]
    return [], None


def run_batches(gen: Host) -> None:
    """Batch rounds until the target is kept, the requests run out or the cap stops them."""
    client = make_client(gen.ep, timeout=gen.cfg.request_timeout_s, max_retries=3)
    state_path = gen.work_dir / "batch.json"
    while not gen.done():
        state = read_json(state_path)
        res = None
        if state is None:
            indices = []
            want = _plan_size(gen)
            for i in gen.pending_indices():
                indices.append(i)
                if len(indices) >= want:
                    break
            if not indices:
                return
            reqs, res = _reserve_fitting(gen, [gen.request(i) for i in indices])
            if not reqs:
                return
            state = {"indices": [r.index for r in reqs], "input_file_id": None, "batch_id": None,
                     "created": time.time()}
            atomic_write_json(state_path, state)
        else:
            reqs = [gen.request(i) for i in state["indices"]]
            todo = [r for r in reqs if not gen.is_logged(r.id)]
            try:  # the batch is already submitted: hold its worst case while we wait
                res = gen.reserve(sum(gen.worst_case_usd(r, batch=True) for r in todo))
            except BudgetExceeded:
                res = None
        try:
            batch = _submit(gen, client, state, state_path, reqs)
            batch = poll_batch(client, batch, gen.cfg.batch_poll_s)
            ok = _ingest(gen, client, batch, {r.id: r for r in reqs})
        finally:
            if res is not None:
                res.release()  # the ledger now holds the real cost of every ingested reply
        state_path.unlink()
        if batch.status != "completed" and not ok:
            raise UserError(f"batch {batch.id} ended {batch.status} with no usable output: "
                            f"check the endpoint's batch errors, then re-run to resume")
        if not ok:
            raise UserError(f"batch {batch.id} returned no successful replies: check the request format "
                            "(data/generate/batch-*.jsonl) and the model name")


def _submit(gen: Host, client, state: dict, state_path, reqs):
    if state.get("batch_id"):
        return client.batches.retrieve(state["batch_id"])
    if state.get("input_file_id"):
        # A crash after the upload but before the batch id was saved: find the batch by its file.
        for b in client.batches.list(limit=100):
            if b.input_file_id == state["input_file_id"]:
                state["batch_id"] = b.id
                atomic_write_json(state_path, state)
                return b
    else:
        path = gen.work_dir / f"batch-{state['indices'][0]:06d}.jsonl"
        atomic_write_jsonl(path, [_line(gen, r) for r in reqs])
        with open(path, "rb") as f:
            uploaded = client.files.create(file=f, purpose="batch")
        state["input_file_id"] = uploaded.id
        atomic_write_json(state_path, state)
    batch = client.batches.create(input_file_id=state["input_file_id"], endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"shear_requests": f"{reqs[0].id}..{reqs[-1].id}"})
    state["batch_id"] = batch.id
    atomic_write_json(state_path, state)
    return batch


def poll_batch(client, batch, poll_s: float, label: str = "batch"):
    """Wait for a batch to end, printing each change of status and progress (also used by judging)."""
    shown = None
    while batch.status not in TERMINAL:
        counts = batch.request_counts
        line = f"{label} {batch.id}: {batch.status}" + (f" {counts.completed}/{counts.total}" if counts else "")
        if line != shown:
            print(line, file=sys.stderr, flush=True)
            shown = line
        time.sleep(poll_s)
        batch = client.batches.retrieve(batch.id)
    return batch


def _ingest(gen: Host, client, batch, by_id: dict) -> int:
    if not batch.output_file_id:
        return 0
    text = client.files.content(batch.output_file_id).text
    rows = [json.loads(l) for l in text.splitlines() if l.strip()]
    rows = [r for r in rows if r.get("custom_id") in by_id]
    rows.sort(key=lambda r: by_id[r["custom_id"]].index)  # a deterministic log order
    ok = 0
    for row in rows:
        resp = row.get("response") or {}
        if resp.get("status_code") != 200 or not resp.get("body"):
            gen.retries["batch_line_failed"] += 1
            continue  # not logged: the request is sent again in a later round
        gen.ingest(by_id[row["custom_id"]], resp["body"], batch=True)
        ok += 1
    return ok

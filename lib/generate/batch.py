"""Batch API mode: half price, results within the completion window (24 h at OpenAI).

One round: write the request JSONL (one chat request per line, `custom_id` = the
deterministic request id), upload it, create the batch, poll it, download the output
and feed every reply through the same `Generator.ingest` as the online mode (response
log -> ledger at batch prices -> records). Rounds repeat until the target is kept.

Resumable: the lifecycle is `lib.core.batchapi`'s (its module doc): `data/generate/batch.json`
records the round's request indices, then the uploaded file id, then the batch id, each as
soon as it exists, and a crashed run polls the same batch instead of paying for a new one.
Replies already in the response log are skipped on re-ingest, so a crash while ingesting
loses and duplicates nothing. A request that failed in the batch (batchapi's one rule for the
output and error files) is counted as `batch_line_failed` and sent again in a later round.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Protocol

from lib.core import batchapi
from lib.core.client import Endpoint, make_client
from lib.core.errors import BudgetExceeded, UserError
from lib.generate.config import GenerateConfig
from lib.generate.prompt import Request


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
    def hold(self, reqs: list[Request], *, batch: bool = False): ...
    def hold_committed(self, reqs: list[Request]): ...
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
    return batchapi.chat_line(req.id, body)


def _hold_fitting(gen: Host, reqs: list[Request]):
    """Hold the worst case of as many requests as the cap allows; returns (reqs, reservation)."""
    costs = [gen.worst_case_usd(r, batch=True) for r in reqs]
    while reqs:
        try:
            return reqs, gen.hold(reqs, batch=True)
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
        state = batchapi.read_state(state_path)
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
            reqs, res = _hold_fitting(gen, [gen.request(i) for i in indices])
            if not reqs:
                return
            state = batchapi.begin(state_path, {"indices": [r.index for r in reqs]})
        else:
            reqs = [gen.request(i) for i in state["indices"]]
            todo = [r for r in reqs if not gen.is_logged(r.id)]
            res = gen.hold_committed(todo)  # already submitted: held while we wait, if it still fits
        try:
            batch = batchapi.submit(client, state_path, state, gen.work_dir / f"batch-{reqs[0].index:06d}.jsonl",
                                    lambda: [_line(gen, r) for r in reqs],
                                    metadata={"shear_requests": f"{reqs[0].id}..{reqs[-1].id}"})
            batch = batchapi.wait(client, batch, gen.cfg.batch_poll_s)
            ok = _ingest(gen, batchapi.results(client, batch), {r.id: r for r in reqs})
        finally:
            res.release()  # the ledger now holds the real cost of every ingested reply
        batchapi.end(state_path)
        if batch.status != "completed" and not ok:
            raise UserError(f"batch {batch.id} ended {batch.status} with no usable output: "
                            f"check the endpoint's batch errors, then re-run to resume")
        if not ok:
            raise UserError(f"batch {batch.id} returned no successful replies: check the request format "
                            "(data/generate/batch-*.jsonl) and the model name")


def _ingest(gen: Host, results: list[batchapi.BatchResult], by_id: dict) -> int:
    rows = sorted((r for r in results if r.custom_id in by_id), key=lambda r: by_id[r.custom_id].index)  # log order
    ok = 0
    for r in rows:
        if not r.ok:
            gen.retries["batch_line_failed"] += 1
            continue  # not logged: the request is sent again in a later round
        gen.ingest(by_id[r.custom_id], r.body, batch=True)
        ok += 1
    return ok

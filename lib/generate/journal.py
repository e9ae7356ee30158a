"""The response log, the ledger entry of each reply, and recovery after a crash.

The order of writes for one reply (`Journal.ingest`), and why it is crash-safe:
1. Request *i* has the deterministic id `gen-<run_seed>-<i>` and a prompt that is a pure
   function of (seeds, run_seed, i).
2. Its reply is appended to responses.jsonl (one write + fsync) BEFORE anything else. The
   response log is the source of truth; everything else is derived.
3. Then the ledger gets the call under record_id `api:<request id>`; the ledger keeps one
   record per id, so replaying it can never count a call twice.
4. Then the reply goes through the Harvest (harvest.py) and its kept records are appended
   (one write + fsync for the whole reply) to generated.jsonl, ids `<request id>-<item>`.
The Harvest is deterministic, so the kept records are a function of the response log *in
log order*. `recover()` cuts torn last lines, writes ledger records missing for logged
replies (a kill between 2 and 3), replays the log through a fresh Harvest and appends the
kept records missing from generated.jsonl (a kill between 2 and 4), after checking that
what is there is exactly a prefix of the replay. A kill before 2 loses only an
unacknowledged reply; its request id is not in the log, so it is sent again and recorded
once. Hence: no duplicate records, no lost record, every logged request in the ledger once.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lib.core.errors import UserError
from lib.core.files import AppendLog, read_log, repair_torn_tail
from lib.generate.harvest import Harvest
from lib.generate.prompt import Request


@dataclass
class Spend:
    """What the logged replies cost, summed from their ledger records."""

    requests_done: int = 0
    usd: float = 0.0
    usd_reference: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


# Fault injection for the kill -9 tests: SHEAR_GENERATE_CRASH="<point>:<n>" SIGKILLs this
# process at the n-th time (1-based) it reaches <point>; "log" and "records" first write
# half of a line, i.e. die mid-write. Unset in normal runs, where this costs one dict lookup.
_CRASH_COUNTS: Counter = Counter()


def _crash_point(point: str, log: AppendLog | None = None) -> None:
    spec = os.environ.get("SHEAR_GENERATE_CRASH")
    if not spec:
        return
    name, _, n = spec.partition(":")
    if name != point:
        return
    _CRASH_COUNTS[point] += 1
    if _CRASH_COUNTS[point] != int(n or 1):
        return
    if log is not None:
        os.write(log._fd, b'{"torn": "half a line')
        os.fsync(log._fd)
    os.kill(os.getpid(), signal.SIGKILL)


def response_record(req: Request, completion, *, batch: bool = False) -> dict:
    """What goes to the response log for one chat completion (an openai object or a dict)."""
    c = completion if isinstance(completion, dict) else completion.model_dump()
    choice = (c.get("choices") or [{}])[0]
    return {
        "request_id": req.id, "index": req.index, "seed_ids": list(req.seed_ids),
        "response_id": c.get("id"), "model": c.get("model"),
        "text": (choice.get("message") or {}).get("content") or "",
        "finish_reason": choice.get("finish_reason"), "usage": c.get("usage") or {},
        "batch": batch, "received": time.time(), "kind": req.kind,
    }


class Journal:
    def __init__(self, data_dir: Path, endpoint, *, ledger=None, phase: str = "data"):
        self.generated_path = data_dir / "generated.jsonl"
        self.responses_path = data_dir / "generate" / "responses.jsonl"
        self.endpoint = endpoint
        self.ledger = ledger
        self.phase = phase
        self.logged_ids: set[str] = set()
        self.spend = Spend()
        self._log: AppendLog | None = None
        self._out: AppendLog | None = None

    @contextlib.contextmanager
    def opened(self):
        """Hold both logs open for `ingest` (a run opens them once, not per reply)."""
        with AppendLog(self.responses_path) as log, AppendLog(self.generated_path) as out:
            self._log, self._out = log, out
            try:
                yield self
            finally:
                self._log = self._out = None

    def ingest(self, harvest: Harvest, req: Request, resp: dict) -> tuple[list[dict], float]:
        """Steps 2-4 of the module doc for one reply; returns (kept records, usd charged).

        No await inside: the order of the response log is the order of processing."""
        if req.id in self.logged_ids:
            return [], 0.0
        _crash_point("log", self._log)
        self._log.append(resp)
        self.logged_ids.add(req.id)
        _crash_point("after_log")
        rec = self._ledger_record(resp)
        self._account(resp, rec)
        _crash_point("after_ledger")
        kept = harvest.process(resp)
        _crash_point("records", self._out if kept else None)
        self._out.append_many(kept)
        return kept, float((rec or {}).get("usd") or 0.0)

    def recover(self, harvest: Harvest) -> None:
        """Rebuild `harvest` (fresh) and the spend from disk; see the module doc."""
        repair_torn_tail(self.responses_path)
        repair_torn_tail(self.generated_path)
        in_ledger = {}
        if self.ledger is not None:
            in_ledger = {r["id"]: r for r in self.ledger.records(kind="api", phase=self.phase)}
        self.logged_ids = set()
        self.spend = Spend()
        for resp in read_log(self.responses_path):
            if resp["request_id"] in self.logged_ids:
                continue
            self.logged_ids.add(resp["request_id"])
            rec = in_ledger.get(f"api:{resp['request_id']}")
            if rec is None:
                rec = self._ledger_record(resp)
            self._account(resp, rec)
            harvest.process(resp)
        on_disk = [r["id"] for r in read_log(self.generated_path)]
        expected = [r["id"] for r in harvest.records]
        if on_disk != expected[: len(on_disk)]:
            raise UserError(
                f"{self.generated_path} does not match {self.responses_path} under the current settings "
                "(seeds, language, threshold or target changed?): use a new run_dir, or the settings of the first run"
            )
        with AppendLog(self.generated_path) as out:
            out.append_many(harvest.records[len(on_disk):])

    def _ledger_record(self, resp: dict) -> dict | None:
        if self.ledger is None:
            return None
        return self.ledger.record_api(
            phase=self.phase, endpoint=self.endpoint, usage=resp.get("usage") or {},
            request_id=resp.get("response_id"), batch=bool(resp.get("batch")), purpose="self-instruct",
            record_id=f"api:{resp['request_id']}")

    def _account(self, resp: dict, rec: dict | None) -> None:
        u = resp.get("usage") or {}
        s = self.spend
        s.requests_done += 1
        s.prompt_tokens += int(u.get("prompt_tokens") or 0)
        s.completion_tokens += int(u.get("completion_tokens") or 0)
        if rec is not None:
            s.usd += float(rec.get("usd") or 0.0)
            s.usd_reference += float(rec.get("usd_reference") or 0.0)

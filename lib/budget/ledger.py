"""The ledger: append-only spend records that survive kills, preemptions and many writers.

    ledger = Ledger(run_dir / "ledger", writer="generate", budgets=budgets)
    ledger.record_api(phase="data", endpoint=ep, usage=resp.usage, request_id=resp.id)
    with ledger.meter("training", accelerator="A100-80GB", count=8, hourly_usd=8.65):
        train()                                   # an interval re-written every heartbeat
    ledger.spent("data"); ledger.records()

Why it is built this way:
- One file per writer (`<root>/<writer>.jsonl`), so notebooks, workers and cloud nodes never
  write into the same file. If two processes do share a writer name, each record is still one
  `write()` on an O_APPEND descriptor, which the kernel keeps whole.
- Every record is flushed and fsynced before the call returns: money already spent is on disk.
- Every record has an id; reading keeps one record per id (the highest `rev`), so recording the
  same API response twice, or re-writing an open GPU interval at each heartbeat, counts once.
- The file is an append-only log under lib/core/files.py's one rule: a kill in the middle of a
  write leaves at most a torn last line; readers skip it, and the next writer that opens the
  file cuts it off (under the same lock every append takes, so no live record is cut).
"""
from __future__ import annotations

import json
import math
import os
import re
import socket
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from lib.core.errors import UserError
from lib.core.files import AppendLog, repair_torn_tail

from .config import PHASES, Budgets
from .prices import api_cost, usage_tokens

_WRITER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_usd(rec: dict, where: str) -> None:
    """Money spent is a finite amount >= 0 (or None: tokens kept, price unknown). A negative one
    would hide spend from every cap, so a ledger holding one is refused, naming the record."""
    usd = rec.get("usd")
    if usd is None:
        return
    if isinstance(usd, bool) or not isinstance(usd, int | float) or not math.isfinite(usd) or usd < 0:
        raise UserError(f"{where}: record {str(rec.get('id'))[:80]!r} has usd {str(usd)[:40]!r}, not an amount "
                        ">= 0: a ledger holds money spent; fix or remove that line")


def _epoch(t: float | datetime | None) -> float:
    if t is None:
        return time.time()
    if isinstance(t, datetime):
        return t.timestamp()
    return float(t)


class Ledger:
    def __init__(self, root_dir: str | os.PathLike, writer: str = "main", budgets: Budgets | None = None):
        if not _WRITER.match(writer):
            raise UserError(f"bad ledger writer name {writer!r}: use letters, digits, '.', '_' or '-'")
        self.root = Path(root_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.writer = writer
        self.budgets = budgets
        self.path = self.root / f"{writer}.jsonl"
        self._lock = threading.RLock()
        self._offsets: dict[Path, int] = {}
        self._by_id: dict[str, dict] = {}
        self.bad_lines = 0  # torn or foreign lines skipped while reading
        self._warned: set[str] = set()
        repair_torn_tail(self.path)
        if budgets is not None:
            budgets.check_spent(self.spent_by_phase())

    # -- writing ---------------------------------------------------------------------------

    def _write_bytes(self, data: bytes) -> None:
        with AppendLog(self.path, repair=False) as log:  # repaired once, in __init__
            log.write_lines(data)

    def append(self, record: dict) -> dict:
        """Write one record (must carry `id`, `kind`, `phase`, `usd`); returns it."""
        if record.get("phase") not in PHASES:
            raise UserError(f"unknown budget phase {record.get('phase')!r}: use one of {', '.join(PHASES)}")
        check_usd(record, "a new ledger record")
        record = {"ts": time.time(), "writer": self.writer, "pid": os.getpid(), "rev": 0, **record}
        line = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            self._write_bytes(line.encode("utf-8"))
            self._take(record)
        self._maybe_warn(record["phase"])
        return record

    def record_api(self, phase: str, endpoint, usage: Any, request_id: str | None = None, batch: bool = False,
                   purpose: str = "", record_id: str | None = None) -> dict:
        """One API call, priced as `endpoint.billed_as` (lib.core.client's one billing rule); an
        endpoint that is not billed costs $0. Every call is also priced at the reference model."""
        prompt, completion, cached = usage_tokens(usage)
        prices = self.budgets.prices if self.budgets else None
        ref_model = (self.budgets.reference if self.budgets else {}).get("api_model", "gpt-4o-mini")
        billed_as = endpoint.billed_as
        local = billed_as is None
        price_model = billed_as or endpoint.model
        rec = {
            "kind": "api", "phase": phase, "model": endpoint.model,
            "base_url": endpoint.base_url, "local": local, "price_model": price_model,
            "prompt_tokens": prompt, "completion_tokens": completion, "cached_tokens": cached,
            "batch": bool(batch), "request_id": request_id, "purpose": purpose,
            "reference_model": ref_model,
        }
        rec["usd_reference"], _ = api_cost(ref_model, prompt, completion, cached, batch, prices=prices)
        price_error = None
        if local:
            rec["usd"], rec["price_source"] = 0.0, "local server ($0)"
        else:
            try:
                rec["usd"], rec["price_source"] = api_cost(price_model, prompt, completion, cached, batch, prices=prices)
            except UserError as e:  # keep the tokens on disk, then stop: spend we cannot price is unbounded
                rec["usd"], rec["price_source"], price_error = None, f"unpriced: {e}", e
        if record_id is None:
            # A remote response id is unique, so re-recording the same response is idempotent.
            record_id = f"api:{request_id}" if (request_id and not local) else f"api:{uuid.uuid4().hex}"
        rec["id"] = record_id
        out = self.append(rec)
        if price_error is not None:
            raise price_error
        return out

    def record_compute(self, phase: str, start: float | datetime, end: float | datetime | None = None, *,
                       accelerator: str = "cpu", count: int = 1, hourly_usd: float = 0.0, nodes: int = 1,
                       cloud: str = "local", region: str | None = None, instance: str | None = None,
                       spot: bool = False, task_id: str | None = None, recovery: int | None = None,
                       purpose: str = "", record_id: str | None = None, open: bool = False, rev: int = 0,
                       price_source: str = "") -> dict:
        """A compute interval; `hourly_usd` is per node (the instance price), so usd = hours x price x nodes."""
        start_s, end_s = _epoch(start), _epoch(end)
        if end_s < start_s:
            raise UserError(f"compute interval ends before it starts ({end_s} < {start_s}): pass start <= end")
        if hourly_usd < 0:
            raise UserError(f"hourly_usd is negative ({hourly_usd}): pass the instance's hourly price")
        task_id = task_id or os.environ.get("SKYPILOT_TASK_ID") or f"local-{socket.gethostname()}"
        hours = (end_s - start_s) / 3600.0
        rec = {
            "kind": "compute", "phase": phase, "start": start_s, "end": end_s, "hours": hours,
            "accelerator": accelerator, "count": int(count), "nodes": int(nodes), "cloud": cloud,
            "region": region, "instance": instance, "spot": bool(spot), "hourly_usd": float(hourly_usd),
            "task_id": task_id, "recovery": recovery, "purpose": purpose, "open": bool(open), "rev": int(rev),
            "usd": hours * float(hourly_usd) * int(nodes), "price_source": price_source,
            "id": record_id or f"compute:{task_id}:{self.writer}:{int(start_s * 1e6)}",
        }
        return self.append(rec)

    def meter(self, phase: str, *, heartbeat_s: float = 300.0, **compute) -> "ComputeMeter":
        """Context manager metering the enclosed work as one compute interval with heartbeats."""
        return ComputeMeter(self, phase, heartbeat_s=heartbeat_s, **compute)

    # -- reading ---------------------------------------------------------------------------

    def _take(self, rec: dict) -> None:
        rid = rec.get("id")
        if not isinstance(rid, str) or rec.get("phase") not in PHASES:
            self.bad_lines += 1
            return
        old = self._by_id.get(rid)
        if old is None or (rec.get("rev", 0), rec.get("ts", 0)) >= (old.get("rev", 0), old.get("ts", 0)):
            self._by_id[rid] = rec

    def _refresh(self) -> None:
        """Read what every writer appended since last time; only whole lines are consumed."""
        with self._lock:
            for path in sorted(self.root.glob("*.jsonl")):
                offset = self._offsets.get(path, 0)
                try:
                    with open(path, "rb") as f:
                        f.seek(offset)
                        chunk = f.read()
                except FileNotFoundError:
                    continue
                end = chunk.rfind(b"\n")
                if end < 0:
                    continue
                for raw in chunk[: end + 1].splitlines():
                    if not raw.strip():
                        continue
                    try:
                        rec = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        self.bad_lines += 1  # a torn line from a killed writer: its call is re-done on resume
                        continue
                    if isinstance(rec, dict):
                        check_usd(rec, str(path))
                        self._take(rec)
                    else:
                        self.bad_lines += 1
                self._offsets[path] = offset + end + 1

    def records(self, kind: str | None = None, phase: str | None = None) -> list[dict]:
        self._refresh()
        with self._lock:
            recs = list(self._by_id.values())
        recs = [r for r in recs if (kind is None or r.get("kind") == kind) and (phase is None or r.get("phase") == phase)]
        return sorted(recs, key=lambda r: (r.get("end", r.get("ts", 0)), r["id"]))

    def spent(self, phase: str | None = None) -> float:
        return sum(float(r.get("usd") or 0.0) for r in self.records(phase=phase))

    def spent_by_phase(self) -> dict[str, float]:
        out = {p: 0.0 for p in PHASES}
        for r in self.records():
            out[r["phase"]] += float(r.get("usd") or 0.0)
        return out

    def _maybe_warn(self, phase: str) -> None:
        if self.budgets is None or phase in self._warned:
            return
        spent = self.spent(phase)
        pb = self.budgets.phase(phase)
        with self._lock:
            if not (spent >= pb.warn_usd and spent > 0) or phase in self._warned:
                return
            self._warned.add(phase)
            print(f"budget warning: {phase} has spent ${spent:,.2f} of its ${pb.cap:,.2f} cap "
                  f"(warn level ${pb.warn_usd:,.2f} in budgets.yaml)", file=sys.stderr)


class ComputeMeter:
    """Meter one compute interval: open now, re-written every `heartbeat_s`, closed on exit.

    A SIGKILL (spot preemption) loses at most one heartbeat of time: the last re-write is on
    disk with `open: true`. After a recovery the task starts a new interval under the same
    `SKYPILOT_TASK_ID`; `recovery` counts the intervals this task already had.
    """

    def __init__(self, ledger: Ledger, phase: str, *, heartbeat_s: float = 300.0, **compute):
        self.ledger, self.phase, self.heartbeat_s, self.compute = ledger, phase, heartbeat_s, compute
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rev = 0
        self.record: dict | None = None

    def _write(self, *, open: bool) -> dict:
        self.record = self.ledger.record_compute(
            self.phase, self.start, time.time(), open=open, rev=self.rev, record_id=self.id, **self.compute)
        self.rev += 1
        return self.record

    def __enter__(self) -> "ComputeMeter":
        self.start = time.time()
        task_id = self.compute.get("task_id") or os.environ.get("SKYPILOT_TASK_ID") or f"local-{socket.gethostname()}"
        self.compute["task_id"] = task_id
        if self.compute.get("recovery") is None:
            self.compute["recovery"] = sum(1 for r in self.ledger.records(kind="compute") if r.get("task_id") == task_id)
        self.id = f"compute:{task_id}:{self.ledger.writer}:{int(self.start * 1e6)}"
        self._write(open=True)
        self._thread = threading.Thread(target=self._beat, name="ledger-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._write(open=True)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._write(open=False)

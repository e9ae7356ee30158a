"""The self-instruct generator: concurrent, crash-safe, budget-capped.

    gen = Generator(run_dir, endpoint, seeds, GenerateConfig(num_instructions_to_generate=100),
                    ledger=ctx.ledger, budgets=ctx.budgets)
    summary = gen.run()          # resumes whatever a killed run left behind

Files (under run_dir/data/):
    generated.jsonl            Alpaca records kept so far (the contract with 02_clean)
    generate/responses.jsonl   every teacher reply, as received (append-only, fsynced)
    generate/rejected.jsonl    every dropped item and why (derived, rewritten atomically)
    generate/summary.json      counters, spend, cost per 1,000 kept (rewritten atomically)
    generate/batch.json        the Batch API job in flight, if any (see batch.py)

One job per file: config.py the settings; sending.py one request with retries;
harvest.py what a reply yields (parse, filter, dedupe); journal.py the response log, its
ledger entries and recovery (the crash-safety argument is there); online.py the request
loop; batch.py the Batch API rounds. This file wires them together and is the interface
both modes drive (the methods under "what a mode calls"): the next request, its worst
case and reservation, ingesting a reply, stopping.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from lib.budget import BudgetGuard
from lib.budget.guard import hold, hold_committed, refuse_unpriced, worst_case_usd
from lib.core.client import Endpoint
from lib.core.files import atomic_write_json, atomic_write_jsonl
from lib.generate.batch import run_batches
from lib.generate.config import GenerateConfig
from lib.generate.harvest import ANSWER_SUFFIX, Harvest
from lib.generate.journal import Journal, response_record
from lib.generate.online import run_online
from lib.generate.prompt import Request, make_request, request_id
from lib.generate.seeds import SeedTask
from lib.generate.sending import request_body


class Generator:
    def __init__(self, run_dir, endpoint: Endpoint, seeds: list[SeedTask], config: GenerateConfig, *,
                 ledger=None, budgets=None, phase: str = "data", show_progress: bool = True):
        self.run_dir = Path(run_dir)
        self.ep = endpoint
        self.seeds = seeds
        self.cfg = config
        self.budgets = budgets
        self.show_progress = show_progress
        self.work_dir = self.run_dir / "data" / "generate"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.rejected_path = self.work_dir / "rejected.jsonl"
        self.summary_path = self.work_dir / "summary.json"
        self.price_model = endpoint.billed_as  # None: calls cost nothing (lib.core.client's one rule)
        self.guard = None
        if budgets is not None and ledger is not None:
            self.guard = BudgetGuard(budgets, ledger, phase=phase)
        refuse_unpriced(self.price_model, getattr(budgets, "prices", None))  # before the first call
        self.journal = Journal(self.run_dir / "data", endpoint, ledger=ledger, phase=phase)
        self.harvest = Harvest(seeds, config, endpoint.model)
        self.retries: Counter = Counter()
        self.stop_reason = ""
        self._bar = None

    @property
    def records(self) -> list[dict]:
        """The records kept so far, in order."""
        return self.harvest.records

    def recover(self) -> None:
        """Rebuild state from disk after a crash (or a normal earlier run); see journal.py."""
        self.harvest = Harvest(self.seeds, self.cfg, self.ep.model)
        self.journal.recover(self.harvest)

    def run(self) -> dict:
        self.recover()
        self._open_bar()
        try:
            if not self.done():
                with self.journal.opened():
                    if self.cfg.use_batch_api:
                        run_batches(self)
                    else:
                        run_online(self)
        finally:
            if self._bar is not None:
                self._bar.close()
        if not self.stop_reason:
            self.stop_reason = "target reached" if self.done() else "request limit reached"
        return self.finish()

    # -- what a mode calls (online.py, batch.py) ------------------------------------------
    def done(self) -> bool:
        return len(self.harvest.records) >= self.cfg.num_instructions_to_generate

    def request(self, index: int) -> Request:
        cfg = self.cfg
        return make_request(self.seeds, index, run_seed=cfg.run_seed, num_examples=cfg.num_examples,
                            num_tasks=cfg.tasks_per_request, language=cfg.language, topic_hints=cfg.topic_hints)

    def pending_indices(self):
        """Request indices not in the log yet, in order (a resumed run re-sends the gaps first)."""
        i = 0
        while True:
            if self.cfg.max_requests and i >= self.cfg.max_requests:
                return
            if not self.is_logged(request_id(self.cfg.run_seed, i)):
                yield i
            i += 1

    def answers_due(self, asked: set[str]):
        """Follow-up requests for kept-but-unanswered tasks not yet logged nor in `asked`."""
        for rid in list(self.harvest.pending_answers):
            if rid not in asked and not self.is_logged(rid + ANSWER_SUFFIX):
                yield rid, self.harvest.answer_request(rid)

    def short_of_target(self) -> bool:
        return self.harvest.short_of_target()

    def yield_so_far(self) -> tuple[int, int]:
        """(records kept, requests logged): what one more request is likely to bring."""
        return len(self.harvest.records), self.journal.spend.requests_done

    def is_logged(self, rid: str) -> bool:
        return rid in self.journal.logged_ids

    def request_body(self, req: Request) -> dict:
        return request_body(self.cfg, self.ep, req)

    def out_tokens(self, req: Request) -> int:
        """The completion limit of a request: its worst case."""
        return self.cfg.answer_max_tokens if req.kind == "answer" else self.cfg.max_tokens

    def worst_case_usd(self, req: Request, *, batch: bool = False) -> float:
        return worst_case_usd(self.price_model, [req.messages], self.out_tokens(req), batch=batch,
                              prices=getattr(self.budgets, "prices", None))

    def hold(self, reqs: list[Request], *, batch: bool = False):
        """Hold the worst case of `reqs` against the phase cap while they run
        (lib.budget.guard.hold; BudgetExceeded if it does not fit)."""
        return hold(self.guard, self.price_model, [r.messages for r in reqs], [self.out_tokens(r) for r in reqs],
                    batch=batch)

    def hold_committed(self, reqs: list[Request]):
        """The worst case of a batch already submitted, held if it still fits (lib.budget.guard)."""
        return hold_committed(self.guard, self.price_model, [r.messages for r in reqs],
                              [self.out_tokens(r) for r in reqs])

    def budget_left(self) -> float:
        return self.guard.remaining() if self.guard else 0.0

    def ingest(self, req: Request, completion, *, batch: bool = False) -> float:
        """Log, meter and harvest one reply (journal.py); returns the usd it was charged."""
        kept, usd = self.journal.ingest(self.harvest, req, response_record(req, completion, batch=batch))
        self._update_bar(len(kept))
        return usd

    def stop(self, reason: str) -> None:
        """Stop for `reason` (the first reason given is the one reported)."""
        if not self.stop_reason:
            self.stop_reason = reason
            if reason.startswith("budget cap"):
                print(f"stopping before the cap: {reason.removeprefix('budget cap: ')}", file=sys.stderr)

    # -- progress ----------------------------------------------------------------------
    def _update_bar(self, n: int) -> None:
        if self._bar is None:
            return
        self._bar.update(n)
        self._bar.set_postfix_str(self.postfix(), refresh=True)

    def postfix(self) -> str:
        s = self.journal.spend
        rej = " ".join(f"{k}={v}" for k, v in self.harvest.rejected_counts.most_common())
        kept = len(self.harvest.records)
        proj_s = f"${s.usd / kept * self.cfg.num_instructions_to_generate:,.4f}" if kept else "?"
        return f"req={s.requests_done} rejected[{rej}] spent=${s.usd:,.4f} projected={proj_s}"

    def _open_bar(self):
        if not self.show_progress:
            return
        self._bar = tqdm(total=self.cfg.num_instructions_to_generate, initial=len(self.harvest.records),
                         unit="kept", desc="generate", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
        self._bar.set_postfix_str(self.postfix())

    # -- end of run --------------------------------------------------------------------
    def finish(self) -> dict:
        atomic_write_jsonl(self.rejected_path, self.harvest.rejected)
        s = self.journal.spend
        records = self.harvest.records
        kept = len(records)
        summary = {
            "kept": kept, "target": self.cfg.num_instructions_to_generate, "requests": s.requests_done,
            "answered": sum(1 for r in records if r["source"].endswith("+answer")),
            "pending_answers": len(self.harvest.pending_answers),
            "rejected": dict(self.harvest.rejected_counts), "retries": dict(self.retries),
            "stop_reason": self.stop_reason,
            "usd": s.usd, "usd_reference": s.usd_reference,
            "usd_per_1k_kept": (s.usd / kept * 1000) if kept else None,
            "usd_reference_per_1k_kept": (s.usd_reference / kept * 1000) if kept else None,
            "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
            "price_model": self.price_model,
            "endpoint": {k: v for k, v in self.ep.public().items() if k != "extra"},
            "config": asdict(self.cfg),
        }
        atomic_write_json(self.summary_path, summary)
        return summary

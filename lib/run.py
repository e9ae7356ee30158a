"""What every notebook shares: the run directory, the ledger, the budgets, the teacher.

    ctx = RunContext(run_dir, phase="data", writer="generate")
    with ctx.endpoint(base_url, model, api_key_env, price_model) as ep:
        ...  # ep is an lib.core.client.Endpoint; an empty base_url starts the embedded server

Layout of a run directory (every phase reads and writes only these names):

    runs/<id>/
      01_generate.ipynb ... 05_budget.ipynb   executed notebooks (no secrets, ever)
      data/generated.jsonl                     Alpaca records kept by generation
      data/clean.jsonl                         records that survived cleaning
      model/                                   fine-tuned Hugging Face checkpoint (+ .complete)
      train/metrics.json                       held-out loss of base and fine-tuned model
      eval/                                    answers, judgments, results.json
      ledger/<writer>.jsonl                    append-only spend records
      report/budget.md, report/budget.png      the budget report
      logs/                                    server and worker logs
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from lib.budget import PHASES, Ledger, load_budgets
from lib.budget.guard import refuse_unpriced
from lib.core.client import Endpoint, check_endpoint
from lib.core.errors import UserError
from lib.core.model import is_embedded
from lib.core.paths import BUDGETS_YAML, REPO
from lib.core.server import LocalServer, embedded_server


class RunContext:
    def __init__(self, run_dir: str | os.PathLike, *, phase: str, writer: str,
                 budgets_path: str | os.PathLike | None = None):
        if phase not in PHASES:
            raise UserError(f"unknown phase {phase!r}: use one of {', '.join(PHASES)}")
        run_dir = Path(run_dir)
        self.run_dir = run_dir if run_dir.is_absolute() else REPO / run_dir
        self.phase = phase
        self.budgets = load_budgets(budgets_path or BUDGETS_YAML)
        for sub in ("data", "ledger", "logs", "report"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        rank = os.environ.get("SKYPILOT_NODE_RANK", "0")
        if rank != "0":  # every node appends to its own file, even on a shared bucket mount
            writer = f"{writer}-node{rank}"
        self.ledger = Ledger(self.run_dir / "ledger", writer=writer, budgets=self.budgets)

    def path(self, *parts: str) -> Path:
        p = self.run_dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    @contextlib.contextmanager
    def endpoint(self, base_url: str = "", model: str = "embedded", api_key_env: str = "OPENAI_API_KEY",
                 price_model: str = "", check: bool = True):
        """Yield an Endpoint; with no base_url, serve `model` (default: the embedded one) locally."""
        if base_url:
            ep = Endpoint(base_url=base_url, model=model, api_key_env=api_key_env, price_model=price_model or None)
            refuse_unpriced(ep.billed_as, self.budgets.prices)  # before a single token is bought
            if check:
                check_endpoint(ep)
            yield ep
            return
        log = self.run_dir / "logs" / f"server-{os.getpid()}.log"
        # the embedded teacher/judge is served as the runner serves it; any other model as a checkpoint
        server = embedded_server(log) if is_embedded(model) else LocalServer(model, log_path=log)
        with server as srv:
            yield Endpoint(base_url=srv.base_url, model=srv.model, api_key_env=api_key_env,
                           price_model=price_model or None)

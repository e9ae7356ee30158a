"""Budget invariants under faults: the generation engine behind the fault proxy, with a tiny cap.

The teacher is the real embedded server, reached through a FaultProxy that rate-limits,
fails, drops, slows and truncates; calls are priced as gpt-4o-mini (`price_model`), so a
cap of a few hundredths of a cent is reached after a handful of requests. What must hold:

- spend never exceeds the cap (the guard reserves the worst case before each call);
- a failed call (429, 500, dropped connection) is not billed; a truncated one is billed for
  exactly the usage the server returned; nothing is billed twice;
- every retry is counted under its reason.

Run: .venv/bin/pytest tests/test_hardening_budget.py -q
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lib.testing.faultproxy import FaultProxy, FaultRates

CAP = 0.0008  # USD: about four small gpt-4o-mini calls once the worst case is reserved


def _budgets(tmp: Path, cap: float = CAP) -> Path:
    p = tmp / "budgets.yaml"
    p.write_text(f"""currency: USD
phases:
  data:       {{target: {cap}, cap: {cap}, warn: 1.0}}
  training:   {{target: 1, cap: 2, warn: 0.8}}
  evaluation: {{target: 1, cap: 2, warn: 0.8}}
  serving:    {{target: 1, cap: 1, warn: 0.8}}
""")
    return p


def _generate(run_dir: Path, base_url: str, model: str, budgets: Path, seeds_path: Path, **cfg):
    from lib.core.client import Endpoint
    from lib.generate import GenerateConfig, Generator, load_seed_tasks
    from lib.run import RunContext

    ctx = RunContext(run_dir, phase="data", writer="generate", budgets_path=budgets)
    ep = Endpoint(base_url=base_url, model=model, price_model="gpt-4o-mini")
    config = GenerateConfig(**{"num_instructions_to_generate": 1000, "concurrency": 2, "max_tokens": 24, "tasks_per_request": 2,
                               "backoff_base_s": 0.01, "backoff_max_s": 0.05, "max_retries": 30, **cfg})
    gen = Generator(run_dir, ep, load_seed_tasks(seeds_path), config, ledger=ctx.ledger, budgets=ctx.budgets,
                    show_progress=False)
    return gen.run(), ctx.ledger


def _responses(run_dir: Path) -> list[dict]:
    p = run_dir / "data" / "generate" / "responses.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def test_spend_never_exceeds_a_tiny_cap_and_only_delivered_calls_are_billed(local_server, shared_data, tmp_path):
    seeds = shared_data / "selfinstruct_seed_tasks.jsonl"
    rates = FaultRates(rate_limit=0.2, server_error=0.15, drop=0.1, truncate=0.15, slow=0.05)
    # the first requests get one fault of each kind for sure; seeded rates after that
    script = ["rate_limit", "server_error", "drop", "truncate", "slow"]
    with FaultProxy(local_server.base_url, rates=rates, seed=3, script=script, slow_s=0.3,
                    truncate_tokens=3, retry_after=0.01) as proxy:
        summary, ledger = _generate(tmp_path / "run", proxy.base_url, local_server.model, _budgets(tmp_path), seeds)
        stats, billed = proxy.stats, list(proxy.billed)

    # the cap held, and it is what stopped the run
    assert summary["stop_reason"].startswith("budget cap"), summary["stop_reason"]
    assert 0 < ledger.spent("data") <= CAP
    assert summary["usd"] == pytest.approx(ledger.spent("data"))

    # billed as the API bills: exactly the delivered replies, at the usage they carried
    api = ledger.records(kind="api", phase="data")
    assert sorted(r["request_id"] for r in api) == sorted(b["id"] for b in billed)
    by_id = {b["id"]: b for b in billed}
    for r in api:
        u = by_id[r["request_id"]]["usage"]
        assert (r["prompt_tokens"], r["completion_tokens"]) == (u["prompt_tokens"], u["completion_tokens"])
        assert r["usd"] > 0
    truncated = [b for b in billed if b["fault"] == "truncate"]
    assert truncated and all(b["usage"]["completion_tokens"] == 3 for b in truncated)
    logged = _responses(tmp_path / "run")
    assert len(logged) == len({r["request_id"] for r in logged}) == len(api) == stats["forwarded"]
    assert {r["finish_reason"] for r in logged if r["response_id"] in {b["id"] for b in truncated}} == {"length"}

    # failed attempts were retried, counted by reason, and never billed
    assert summary["retries"].get("429", 0) == stats["rate_limit"] >= 1
    assert summary["retries"].get("5xx", 0) == stats["server_error"] >= 1
    assert summary["retries"].get("connection", 0) == stats["drop"] >= 1


@pytest.mark.full
def test_resumed_run_does_not_cross_the_cap_it_already_spent(local_server, shared_data, tmp_path):
    """A second run on the same run dir starts from what the ledger says was spent."""
    seeds = shared_data / "selfinstruct_seed_tasks.jsonl"
    budgets = _budgets(tmp_path, cap=0.0005)
    run = tmp_path / "run"
    first, ledger = _generate(run, local_server.base_url, local_server.model, budgets, seeds, concurrency=1)
    spent = ledger.spent("data")
    assert first["stop_reason"].startswith("budget cap") and 0 < spent <= 0.0005
    second, ledger2 = _generate(run, local_server.base_url, local_server.model, budgets, seeds, concurrency=1)
    assert second["stop_reason"].startswith("budget cap")
    assert spent <= ledger2.spent("data") <= 0.0005  # what is left under the cap, and not a cent more
    # the first run's calls are neither re-sent nor re-billed
    logged = _responses(run)
    assert len(logged) == len({r["request_id"] for r in logged}) == len(ledger2.records(kind="api"))


def test_malformed_reply_is_retried_not_fatal(local_server, shared_data, tmp_path):
    seeds = shared_data / "selfinstruct_seed_tasks.jsonl"
    with FaultProxy(local_server.base_url, script=["malformed"]) as proxy:
        summary, ledger = _generate(tmp_path / "run", proxy.base_url, local_server.model, _budgets(tmp_path, 1.0),
                                    seeds, max_requests=1, concurrency=1)
        assert proxy.stats["malformed"] == 1 and proxy.stats["forwarded"] == 1
    assert summary["requests"] == 1 and len(ledger.records(kind="api")) == 1

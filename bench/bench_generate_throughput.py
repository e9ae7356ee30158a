"""Concurrency benchmark: does the async generator keep `concurrency` requests in flight?

    python bench/bench_generate_throughput.py [--latency 0.5] [--concurrency 16] [--requests 160]

The teacher is lib/testing/batch_server.py answering every chat request itself after a
fixed injected latency (an OpenAI-compatible HTTP server on 127.0.0.1; the embedded model
serves one request at a time, so it cannot show concurrency). The ideal is
ceil(requests / concurrency) x latency; the generator's real work per reply (response log
fsync, ledger record, parsing, filters, novelty) is included in the measurement.
Target: >= 90% of the ideal throughput.
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lib.budget import Ledger, load_budgets  # noqa: E402
from lib.core.client import Endpoint  # noqa: E402
from lib.generate import GenerateConfig, Generator, load_seed_tasks  # noqa: E402
from lib.testing.batch_server import BatchServer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latency", type=float, default=0.5)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--requests", type=int, default=160)
    a = ap.parse_args()
    seeds = load_seed_tasks("", language="en")
    with tempfile.TemporaryDirectory() as tmp, BatchServer(None, latency_s=a.latency) as api:
        budgets = load_budgets()
        ledger = Ledger(Path(tmp) / "ledger", writer="generate", budgets=budgets)
        ep = Endpoint(base_url=api.base_url, model="canned", price_model="gpt-4o-mini")
        cfg = GenerateConfig(num_instructions_to_generate=10**9, max_requests=a.requests, concurrency=a.concurrency, max_tokens=512)
        gen = Generator(tmp, ep, seeds, cfg, ledger=ledger, budgets=budgets, show_progress=False)
        t = time.perf_counter()
        summary = gen.run()
        wall = time.perf_counter() - t
    ideal = math.ceil(a.requests / a.concurrency) * a.latency
    ratio = ideal / wall
    print(f"machine: {platform.machine()}, python {platform.python_version()}")
    print(f"{summary['requests']} requests, concurrency {a.concurrency}, injected latency {a.latency:.2f} s")
    print(f"wall {wall:.2f} s vs concurrency-bound ideal {ideal:.2f} s -> {ratio:.1%} of ideal throughput "
          f"({summary['requests'] / wall:.1f} req/s)")
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    raise SystemExit(main())

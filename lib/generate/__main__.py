"""Command line for generation (what notebook 01 does, without the pictures).

    python -m lib.generate --run-dir runs/dev --num 100                  # embedded local teacher
    OPENAI_API_KEY=... python -m lib.generate --run-dir runs/oa --base-url https://api.openai.com/v1 \\
        --model gpt-4o-mini --num 52000 --concurrency 32 --batch-api

Re-running the same command resumes: finished requests are never sent again.
"""
from __future__ import annotations

import argparse
import json
import os

from lib.errors import cli


@cli
def main(argv=None) -> None:
    from lib.generate.engine import GenerateConfig
    from lib.generate.runner import generate

    ap = argparse.ArgumentParser(prog="python -m lib.generate", description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--budgets", default="", help="budgets.yaml (default: the repository's)")
    ap.add_argument("--base-url", default="", help="OpenAI-compatible teacher; empty = embedded local model")
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--api-key-env", default="OPENAI_API_KEY", help="NAME of the variable holding the key")
    ap.add_argument("--price-model", default="", help="price calls as this model (genai-prices)")
    ap.add_argument("--seed-path", default="", help="seed tasks (path or URL); empty = the project's own")
    ap.add_argument("--num", type=int, default=100, help="instructions to keep")
    ap.add_argument("--max-requests", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--tasks-per-request", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=3072)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--language", default="en", choices=["en", "zh"])
    ap.add_argument("--run-seed", type=int, default=0)
    ap.add_argument("--batch-api", action="store_true")
    ap.add_argument("--batch-poll-s", type=float, default=10.0)
    ap.add_argument("--answer-missing-outputs", action="store_true",
                    help="answer listed tasks that came without an output with a follow-up request")
    ap.add_argument("--time-limit-s", type=float, default=0.0, help="stop sending requests after this long")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    cfg = GenerateConfig(num_instructions=a.num, max_requests=a.max_requests, concurrency=a.concurrency,
                         tasks_per_request=a.tasks_per_request, max_tokens=a.max_tokens, temperature=a.temperature,
                         language=a.language, run_seed=a.run_seed, use_batch_api=a.batch_api, batch_poll_s=a.batch_poll_s,
                         answer_missing_outputs=a.answer_missing_outputs, time_limit_s=a.time_limit_s)
    summary = generate(a.run_dir, cfg, budgets_path=a.budgets or None, base_url=a.base_url, model=a.model,
                       api_key_env=a.api_key_env, price_model=a.price_model, seed_path=a.seed_path,
                       show_progress=not a.no_progress)
    print(json.dumps({k: summary[k] for k in ("kept", "requests", "rejected", "usd", "usd_per_1k_kept", "stop_reason")}))


if __name__ == "__main__":
    main()

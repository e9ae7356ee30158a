"""Command line for generation (what notebook 01 does, without the pictures).

    python -m lib.generate --run-dir runs/dev --num-instructions-to-generate 100   # embedded local teacher
    OPENAI_API_KEY=... python -m lib.generate --run-dir runs/oa --teacher-base-url https://api.openai.com/v1 \\
        --teacher-model gpt-4o-mini --num-instructions-to-generate 52000 --concurrency 32 --use-batch-api

Every flag is a parameter of notebook 01 under the same name (dashes for underscores): the
settings flags are derived from GenerateConfig (lib/generate/config.py), so a new setting
reaches the CLI by being added there. Re-running the same command resumes: finished
requests are never sent again.
"""
from __future__ import annotations

import argparse
import json

from lib.core.errors import cli
from lib.generate.config import add_arguments, from_arguments
from lib.generate.runner import generate


@cli
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lib.generate", description=__doc__.split("\n")[0])
    # the run, the teacher and the seeds: notebook 01's RUN_PARAMS
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--budgets-path", default="", help="budgets.yaml (default: the repository's)")
    ap.add_argument("--teacher-base-url", default="", help="OpenAI-compatible teacher; empty = embedded local model")
    ap.add_argument("--teacher-model", default="embedded")
    ap.add_argument("--api-key-env", default="OPENAI_API_KEY", help="NAME of the variable holding the key")
    ap.add_argument("--price-model", default="", help="price calls as this model (genai-prices)")
    ap.add_argument("--seed-path", default="", help="seed tasks (path or URL); empty = the project's own")
    ap.add_argument("--no-progress", action="store_true")
    add_arguments(ap)
    a = ap.parse_args(argv)
    summary = generate(a.run_dir, from_arguments(a), budgets_path=a.budgets_path or None,
                       base_url=a.teacher_base_url, model=a.teacher_model, api_key_env=a.api_key_env,
                       price_model=a.price_model, seed_path=a.seed_path, show_progress=not a.no_progress)
    print(json.dumps({k: summary[k] for k in ("kept", "requests", "rejected", "usd", "usd_per_1k_kept", "stop_reason")}))


if __name__ == "__main__":
    main()

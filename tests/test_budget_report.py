"""The budget report: markdown + PNG from a run directory, and its CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lib.budget import Ledger, api_cost, load_budgets, write_report
from lib.client import Endpoint
from lib.paths import BUDGETS_YAML, REPO

LOCAL = Endpoint(base_url="http://127.0.0.1:9/v1", model="embedded")
REMOTE = Endpoint(base_url="https://api.openai.com/v1", model="gpt-4o-mini")


def make_run(run_dir):
    budgets = load_budgets(BUDGETS_YAML)
    gen = Ledger(run_dir / "ledger", writer="generate", budgets=budgets)
    for i in range(4):
        gen.record_api("data", LOCAL, {"prompt_tokens": 500, "completion_tokens": 250}, purpose="self-instruct")
    ev = Ledger(run_dir / "ledger", writer="evaluate", budgets=budgets)
    ev.record_api("evaluation", REMOTE, {"prompt_tokens": 1000, "completion_tokens": 100}, request_id="j1")
    tr = Ledger(run_dir / "ledger", writer="train", budgets=budgets)
    tr.record_compute("training", 1_000_000.0, 1_000_000.0 + 1800, accelerator="A100-80GB", count=8,
                      hourly_usd=8.65, spot=True)
    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    (run_dir / "data" / "clean.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in range(2)))
    (run_dir / "train").mkdir(exist_ok=True)
    (run_dir / "train" / "metrics.json").write_text(json.dumps({"base": {"loss": 2.0}, "train_tokens": 86_400_000}))
    (run_dir / "eval").mkdir(exist_ok=True)
    (run_dir / "eval" / "judgments.jsonl").write_text("{}\n{}\n{}\n{}\n")
    return budgets


def test_report_numbers_are_the_ledgers(tmp_path):
    run = tmp_path / "run-1"
    budgets = make_run(run)
    md, png = write_report(run, budgets)
    text = md.read_text()
    ref_data = 4 * api_cost("gpt-4o-mini", 500, 250)[0]
    eval_usd = api_cost("gpt-4o-mini", 1000, 100)[0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # 0.5 h x $8.65 on the training line; the local teacher's data phase costs $0
    assert f"| training | $4.33 | $0 | $4.33 | $300.00 | $400.00 | 1.4% | ${400 - 0.5 * 8.65:,.2f} |" in text
    assert "| data | $0 | $0 | $0 | $500.00 |" in text
    assert f"${eval_usd:.6f}" in text
    # per kept example on the reference API: 4 local calls priced at gpt-4o-mini over 2 kept examples
    assert f"| kept example (data) | 2 | $0 | ${ref_data / 2:.6f} |" in text
    # reference training: 86.4M tokens / (3000 tok/s/GPU x 8 GPUs) = 1 h at the reference hourly price
    assert "= 1.0000 h at $" in text
    assert "| 1M trained tokens (training) | 86,400,000 tokens |" in text
    assert "| judged answer (evaluation) | 4 |" in text
    assert "Alpaca-7B" in text and "Vicuna-13B" in text and "GPT4All" in text
    assert f"{52_002:,} kept examples" in text
    assert not [p for p in (run / "report").iterdir() if p.name.startswith(".")]  # no temp files left


def test_report_cli_and_bad_run_dir(tmp_path):
    run = tmp_path / "run-2"
    make_run(run)
    r = subprocess.run([sys.executable, "-m", "lib.budget", "report", str(run)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (run / "report" / "budget.md").is_file() and (run / "report" / "budget.png").is_file()
    r = subprocess.run([sys.executable, "-m", "lib.budget", "spent", str(run)], cwd=REPO, capture_output=True, text=True)
    assert "training    $4.325000" in r.stdout
    r = subprocess.run([sys.executable, "-m", "lib.budget", "report", str(tmp_path / "nope")], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "does not exist" in r.stderr


def test_empty_run_still_reports(tmp_path):
    (tmp_path / "run").mkdir()
    md, png = write_report(tmp_path / "run", BUDGETS_YAML)
    assert "Total spent: **$0**" in md.read_text() and png.is_file()

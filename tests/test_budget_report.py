"""The budget report: markdown + PNG from a run directory, and its CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from lib.budget import Ledger, api_cost, load_budgets, write_report
from lib.core.client import Endpoint
from lib.core.paths import BUDGETS_YAML, REPO

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
    (run_dir / "train" / "metrics.json").write_text(json.dumps({"base": {"loss": 2.0}, "trained_tokens": 86_400_000,
                                                                      "model_id": "huggyllama/llama-7b",
                                                                      "max_length": 512, "lora": False}))
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
    # reference training: the launch plan's speed model (not a second constant): HFU x A100 peak / FLOPs per token
    # of LLaMA-7B (the table's shape) at max_length 512, re-derived here from the data file
    table = yaml.safe_load((REPO / "lib" / "data" / "throughput.yaml").read_text())
    prior = next(r for r in table["priors"] if r["method"] == "full" and "A100-80GB" in r["accelerators"])
    shape = table["models"]["huggyllama/llama-7b"]
    h, layers, vocab, inter = shape["hidden"], shape["layers"], shape["vocab"], shape["intermediate"]
    n = layers * (4 * h * h + 3 * h * inter) + h * vocab
    tps = prior["expected"] * table["peaks"]["A100-80GB"]["tflops"] * 1e12 / (6 * n + 12 * layers * h * 512)
    assert f"= {86_400_000 / (tps * 8) / 3600:.4f} h at $" in text and f"{tps:,.0f} tok/s/GPU = HFU" in text
    assert "train_tokens_per_s_per_gpu" not in BUDGETS_YAML.read_text()  # one reference throughput: the plan's
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


def test_trained_tokens_come_from_a_real_train_run(tmp_path):
    """A tiny model trains one epoch on real records: the report's trained tokens are metrics.json's
    `trained_tokens`, which equal optimizer steps x tokens per step from the training log and every
    encoded example's length (each seen once), and "$ per 1M trained tokens" divides by them."""
    from transformers import AutoTokenizer

    from lib.core.model import resolve_model
    from lib.core.masking import encode_records, ensure_pad_token
    from lib.train.recipes import load_recipe
    from lib.train.data import read_training_records as read_jsonl
    from lib.train.sft import TrainConfig, train

    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    records = [{"id": f"r{i}", "instruction": f"Repeat the number {i} a few times.", "output": f"{i} " * (i % 5 + 1)}
               for i in range(24)]
    data = run / "data" / "clean.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    m = train(TrainConfig(recipe="tiny", model="tiny", data=str(data), output_dir=str(run / "model"),
                          num_train_epochs=1, per_device_batch=4, grad_accum=2, max_length=64, run_dir=str(run),
                          budgets_path=str(BUDGETS_YAML), hourly_usd=36.0))
    saved = json.loads((run / "train" / "metrics.json").read_text())
    assert saved["trained_tokens"] == m["trained_tokens"] > 0
    assert (saved["model_id"], saved["nodes"], saved["procs_per_node"], saved["epochs"]) == ("tiny", 1, 1, 1)
    # 24 examples / (4 x 2 per step) = 3 optimizer steps, each logged with its running token count
    assert saved["optimizer_steps"] == 3 == len(saved["loss_curve"])
    seen = [0] + [r["tokens_seen"] for r in saved["loss_curve"]]
    per_step = [b - a for a, b in zip(seen, seen[1:])]
    assert all(t > 0 for t in per_step)
    assert saved["trained_tokens"] == saved["optimizer_steps"] * (sum(per_step) / len(per_step))
    # independent count: one epoch feeds every encoded example once, padding never counted
    tok = AutoTokenizer.from_pretrained(resolve_model("embedded"))
    ensure_pad_token(tok)
    examples, _ = encode_records(read_jsonl(data), tok, fmt=load_recipe("tiny").format, max_length=64)
    assert saved["trained_tokens"] == sum(len(e["input_ids"]) for e in examples)

    md, _ = write_report(run, BUDGETS_YAML)
    text = md.read_text()
    spent = Ledger(run / "ledger", writer="report").spent("training")
    assert spent > 0
    tokens = saved["trained_tokens"]
    per_m = spent * 1e6 / tokens
    shown = f"${per_m:,.2f}" if per_m >= 0.01 else f"${per_m:.6f}"
    assert f"| 1M trained tokens (training) | {tokens:,} tokens | {shown} |" in text
    assert (f"Trained: `tiny` (recipe tiny) on 1 node(s) x 1 process(es), 1 epoch(s) configured, 3 optimizer steps, "
            f"{tokens:,} trained tokens.") in text


def test_report_reads_trained_tokens_from_the_one_key_only(tmp_path):
    run = tmp_path / "run"
    make_run(run)
    metrics = run / "train" / "metrics.json"
    # other counters that look like token counts (the masking pass, a nested total) are not trained tokens
    metrics.write_text(json.dumps({"masking": {"tokens": 113}, "train_tokens": 5, "total_tokens": 7}))
    text = write_report(run, BUDGETS_YAML)[0].read_text()
    assert "| 1M trained tokens (training) | n/a tokens |" in text
    assert "no `trained_tokens` in train/metrics.json" in text
    metrics.write_text(json.dumps({"masking": {"tokens": 113}, "trained_tokens": 86_400_000}))
    text = write_report(run, BUDGETS_YAML)[0].read_text()
    assert "| 1M trained tokens (training) | 86,400,000 tokens |" in text


def test_plan_and_actual_side_by_side(tmp_path):
    from lib.budget.plans import load_plans
    from lib.launch.plan import make_plan, save_plan

    run = tmp_path / "run"
    budgets = make_run(run)
    clean = run / "data" / "clean.jsonl"
    clean.write_text("".join(json.dumps({"id": f"r{i}", "instruction": "Say hi.", "output": "hi " * 40}) + "\n"
                             for i in range(300)))
    plan = make_plan("shear-train-7b", "alpaca_7b", accelerator="A100-80GB", gpus_per_node=8, nodes=1,
                     data=clean, provisioning_hours=0.3)
    # 300 records - 30 held out = 270 examples; batch 16 x 1 x 8 = 128 -> ceil(270/128) = 3 steps x 3 epochs
    assert (plan.data.examples, plan.steps_per_epoch, plan.optimizer_steps) == (270, 3, 9)
    assert plan.trained_tokens == plan.tokens_per_epoch * 3
    assert plan.overheads[0] == {"name": "provisioning + setup", "hours": 0.3, "formula": "0.3 h",
                                 "source": "the task's OVERHEAD_HOURS env", "count": 0}
    plan.hours = plan.compute_hours + plan.overhead_hours
    plan.usd = plan.hours * 8.65
    path = save_plan(run, plan)
    assert path == run / "plan" / "shear-train-7b.json" and load_plans(run)[0]["optimizer_steps"] == 9
    # what training measured: 2 logged intervals of 900 s at 24,000 useful tokens/s over 8 processes
    (run / "train" / "metrics.json").write_text(json.dumps({
        "model_id": "huggyllama/llama-7b", "nodes": 1, "procs_per_node": 8, "world_size": 8, "epochs": 3,
        "optimizer_steps": 9, "trained_tokens": 43_200_000,
        "throughput": [{"seconds": 900.0, "useful_tokens_per_s": 24_000.0}] * 2, "seconds": 2000.0,
        "pace_projection": {"step": 3, "steps": 9, "projected_s": 1900.0}, "train_loop_seconds": 1800.0}))
    text = write_report(run, budgets)[0].read_text()
    assert "## Plan vs actual (training, plan `shear-train-7b`" in text
    assert f"| trained tokens | {plan.trained_tokens:,.0f} | 43,200,000 |" in text
    assert "| optimizer steps | 9 | 9 | 1.00x (+0%) |" in text
    err = (3000 - plan.tokens_per_s_per_gpu) / plan.tokens_per_s_per_gpu  # 24,000 / 8 measured vs planned
    assert f"| tokens/s/GPU | {plan.tokens_per_s_per_gpu:,.1f} | 3,000.0 | {3000 / plan.tokens_per_s_per_gpu:.2f}x " \
           f"({err:+.0%}) |" in text
    assert f"| hours (wall) | {plan.hours:.3f}" in text and "| 0.500 |" in text  # the ledger's 1800 s interval
    assert f"| dollars (training) | ${plan.usd:,.2f} | $4.33 |" in text
    assert "Planned speed from prior full on A100-80GB" in text
    # train() wall time: the plan's training and overhead lines less provisioning, against metrics.json's seconds
    wall = (plan.hours - 0.3) * 3600
    assert f"| train() wall time, s | {wall:,.1f} | 2,000.0 | {2000 / wall:.2f}x ({(2000 - wall) / wall:+.0%}) |" in text
    assert "| training loop, s (projected at step 3 of 9) | 1,900.0 | 1,800.0 | 0.95x (-5%) |" in text


def test_one_node_price_rule_falls_back_per_gpu(monkeypatch, tmp_path):
    """lib.budget.gpu_hourly_usd is the one price of a node (trainer, server, report): without a
    SkyPilot catalog on the machine it scales budgets.yaml's fallback (the reference node's price)
    by GPUs, in the cloud SkyPilot says the node runs in, and says so."""
    from lib.budget import gpu, gpu_hourly_usd

    budgets = load_budgets(BUDGETS_YAML)
    asked = []  # which cloud's catalog was looked up; none is on "this machine"
    monkeypatch.setattr(gpu, "catalog_file", lambda cloud: asked.append(cloud) or tmp_path / cloud / "vms.csv")
    monkeypatch.setenv("SKYPILOT_CLUSTER_INFO", json.dumps({"cloud": "gcp", "region": "us-central1"}))
    usd, source = gpu_hourly_usd(budgets.reference, "A100-80GB:2", spot=True)
    assert asked == ["gcp"]
    assert usd == pytest.approx(budgets.reference["gpu_hourly_usd_fallback"] * 2 / 8)
    assert source == "budgets.yaml reference.gpu_hourly_usd_fallback x 2/8 GPUs (no SkyPilot catalog here)"

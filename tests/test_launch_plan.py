"""The launch plan (`python -m lib.launch sky/train_*.yaml --dry-run`): every training task prints a
plan from a real clean.jsonl whose numbers the test re-derives by hand from the recipe its profile
names, the task YAML, lib/data/throughput.yaml and the seeded catalog; the plan is saved into the
run directory. A task whose GPUs are not those its recipe's batch layout is written for is refused.

All dry-runs run in ONE subprocess (SkyPilot's import dominates; a HOME with the catalog fixture
of tests/sky_catalog.py: AWS, and GCP for the single-GPU LoRA task; no network)."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sky_catalog import A100_1_GCP_SPOT_USD, seeded_home

REPO = Path(__file__).resolve().parent.parent
TRAIN_TASKS = sorted((REPO / "sky").glob("train_*.yaml"))
N_RECORDS = 300

DRIVER = r"""
import contextlib, io, json, sys
from lib.launch.estimate import main
out = {}
for key, args in json.loads(sys.argv[1]).items():
    buf, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as e:
            code = e.code
    out[key] = {"stdout": buf.getvalue(), "stderr": err.getvalue(), "code": code}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory, embedded_model):
    root = tmp_path_factory.mktemp("plan")
    env = seeded_home(root / "home")  # AWS p4de (8 GPUs) and GCP a2-ultragpu-1g (one, for the LoRA task)
    run = root / "run"
    (run / "data").mkdir(parents=True)
    (run / "ledger").mkdir()
    records = [{"id": f"r{i}", "instruction": f"Describe the number {i} in a sentence.", "input": "",
                "output": "It is a number, " + "and more " * (i % 40)} for i in range(N_RECORDS)]
    (run / "data" / "clean.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    calls = {p.stem: [f"sky/{p.name}", "--dry-run", "--run-dir", str(run)] for p in TRAIN_TASKS}
    calls["exact"] = ["sky/train_7b.yaml", "--dry-run", "--data", str(run / "data" / "clean.jsonl"),
                      "--tokenizer", str(embedded_model)]
    calls["no-data"] = ["sky/train_7b.yaml", "--dry-run"]
    calls["bad-data"] = ["sky/train_7b.yaml", "--dry-run", "--data", str(root / "nope.jsonl")]
    two = root / "train_7b_on_2_nodes.yaml"  # the same task on twice the GPUs its recipe is laid out for
    two.write_text((REPO / "sky" / "train_7b.yaml").read_text().replace("num_nodes: 1", "num_nodes: 2"))
    calls["two-nodes"] = [str(two), "--dry-run"]
    r = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(calls)], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return run, json.loads(r.stdout.strip().splitlines()[-1])


def number(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in:\n{text}"
    return float(m.group(1).replace(",", ""))


@pytest.mark.parametrize("path", TRAIN_TASKS, ids=[p.stem for p in TRAIN_TASKS])
def test_every_training_task_prints_a_hand_checkable_plan(runs, path):
    from lib.core.profiles import load_profile
    from lib.launch.plan import OVERHEAD_HOURS
    from lib.train.recipes import load_recipe

    run, out = runs
    res = out[path.stem]
    assert res["code"] == 0, res["stderr"]
    text = res["stdout"]
    task = yaml.safe_load(path.read_text())
    profile = re.search(r"--profile (\S+)", task["run"]).group(1)  # the profile names the recipe
    recipe = load_recipe(load_profile(profile)["notebooks"]["03_train"]["recipe"])
    (acc, count), = [str(task["resources"]["accelerators"]).split(":")]
    gpus, nodes = int(count), int(task.get("num_nodes") or 1)
    rows = yaml.safe_load((REPO / "lib" / "data" / "throughput.yaml").read_text())["rows"]
    tps = next(r["tokens_per_s_per_gpu"] for r in rows if r["recipe"] == recipe.name and r["accelerator"] == acc)
    assert f"model:     {recipe.base_model} (recipe {recipe.name};" in text
    assert f"compute:   {nodes} node(s) x {gpus} {acc} = {gpus * nodes} GPUs" in text
    # 300 records, 03_train holds out 10% = 30; the tokens are an estimate (no LLaMA tokenizer here)
    assert f"data:      {N_RECORDS} records - 30 held out" in text and "= 270 examples" in text
    assert "ESTIMATE: no tokenizer of" in text and "/ 4, cut at" in text
    per_device, accum = recipe.hardware.micro_batch(recipe.packing)
    batch = per_device * accum * gpus * nodes
    steps = math.ceil(math.ceil(270 / batch) * recipe.num_train_epochs)
    assert f"= {batch})) = {math.ceil(270 / batch)} per epoch x {recipe.num_train_epochs:g} epochs = {steps} " \
           "optimizer steps" in text
    tokens = number(r"examples, ([0-9,]+) tokens per epoch", text)
    trained = tokens * recipe.num_train_epochs
    assert f"= {trained:,.0f} trained tokens" in text
    assert f"speed:     {tps:g} tokens/s/GPU [throughput.yaml: assumed:" in text
    hours = trained / (tps * gpus * nodes) / 3600 + OVERHEAD_HOURS
    assert number(r"hours:\s+([0-9.]+) h", text) == pytest.approx(hours, abs=0.006)
    hourly = number(r"at \$([0-9.,]+)/h per node", text)
    if gpus == 1:  # GCP bills the A100 apart from its host: the node price is both (SkyPilot's rule)
        assert "gcp/a2-ultragpu-1g" in text and hourly == pytest.approx(A100_1_GCP_SPOT_USD, abs=0.0005)
    assert number(r"estimate:\s+\$([0-9,.]+)", text) == pytest.approx(hours * hourly * nodes, abs=0.006)
    assert "remaining $400.00" in text
    # saved into the run directory with the same numbers
    saved = json.loads((run / "plan" / f"{task['name']}.json").read_text())
    assert f"plan:      saved to {run / 'plan' / (task['name'] + '.json')}" in text
    assert (saved["optimizer_steps"], saved["trained_tokens"], saved["base_model"]) == (steps, trained,
                                                                                       recipe.base_model)
    assert saved["usd"] == pytest.approx(hours * hourly * nodes, abs=0.006) and saved["lines"]


def test_tokens_are_counted_with_a_tokenizer_when_one_is_here(runs, embedded_model):
    from transformers import AutoTokenizer

    from lib.core.masking import encode_records, ensure_pad_token
    from lib.train.recipes import load_recipe
    from lib.train.data import read_training_records as read_jsonl, split_heldout

    run, out = runs
    text = out["exact"]["stdout"]
    assert out["exact"]["code"] == 0, out["exact"]["stderr"]
    assert f"[tokenizer {embedded_model} (alpaca format, cut at 512)" in text and "ESTIMATE" not in text
    recipe = load_recipe("alpaca_7b")
    tok = AutoTokenizer.from_pretrained(embedded_model)
    ensure_pad_token(tok)
    train, _ = split_heldout(read_jsonl(run / "data" / "clean.jsonl"), 0.1, seed=42)
    examples, _ = encode_records(train, tok, fmt=recipe.format, max_length=recipe.max_length)
    assert f"= 270 examples, {sum(len(e['input_ids']) for e in examples):,} tokens per epoch" in text


def test_without_data_the_assumption_is_labelled_and_bad_data_is_one_line(runs):
    _, out = runs
    text = out["no-data"]["stdout"]
    assert out["no-data"]["code"] == 0
    assert "data:      10,400,000 tokens per epoch [ASSUMED: the task's TRAIN_TOKENS env" in text
    assert "steps:     unknown until clean.jsonl is counted" in text and "plan:" not in text
    bad = out["bad-data"]
    assert bad["code"] == 2 and bad["stderr"].count("\n") == 1 and "no such file" in bad["stderr"]


def test_gpus_other_than_the_recipes_are_refused_in_one_line(runs):
    _, out = runs
    res = out["two-nodes"]
    assert res["code"] == 2 and res["stderr"].count("\n") == 1, res
    assert "runs 2 node(s) x 8 GPUs but recipe alpaca_7b is laid out for 1 x 8 (batch 128)" in res["stderr"]
    assert "num_nodes to 1" in res["stderr"]

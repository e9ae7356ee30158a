"""Training meters its compute into the ledger and stops, with a checkpoint, before the cap."""
from __future__ import annotations

import json

import yaml

from lib.budget import Ledger, load_budgets
from lib.core.paths import BUDGETS_YAML
from lib.train.checkpoints import latest_complete
from lib.train.metering import billed_instance
from lib.train.recipes import load_recipe
from lib.train.sft import TrainConfig, train


def _setup(tmp_path, cap):
    data = yaml.safe_load(BUDGETS_YAML.read_text())
    data["phases"]["training"] = {"target": cap / 2, "cap": cap, "warn": 0.99}
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(yaml.safe_dump(data))
    with open(tmp_path / "train.jsonl", "w") as f:
        for i in range(40):
            f.write(json.dumps({"id": f"r{i}", "instruction": f"Repeat {i}", "output": "ok " * (i % 5 + 1)}) + "\n")
    return budgets


def _cfg(tmp_path, budgets, **kw):
    return TrainConfig(recipe="tiny", model="tiny", data=str(tmp_path / "train.jsonl"),
                       output_dir=str(tmp_path / "model"), run_dir=str(tmp_path / "run"),
                       budgets_path=str(budgets), per_device_batch=2, grad_accum=1, max_length=48, **kw)


def test_training_stops_with_a_checkpoint_before_the_cap(tmp_path):
    # A fake price of $3600/h makes every second cost $1: a $6 cap allows a few tiny steps of 500.
    budgets = _setup(tmp_path, cap=6.0)
    res = train(_cfg(tmp_path, budgets, max_steps=500, save_steps=1, hourly_usd=3600.0))
    assert res["stopped_for_budget"] and 0 < res["global_step"] < 500
    ckpt = latest_complete(tmp_path / "model.checkpoints")
    assert ckpt is not None and ckpt.name == f"checkpoint-{res['global_step']}"  # nothing paid for is lost
    ledger = Ledger(tmp_path / "run" / "ledger", writer="check", budgets=load_budgets(budgets))
    spent = ledger.spent("training")
    assert 0 < spent <= 6.0
    recs = ledger.records(kind="compute", phase="training")
    assert recs and all(r["hourly_usd"] == 3600.0 and r["accelerator"] == "cpu" for r in recs)
    assert res["budget_projection"]["projected_usd"] > 6.0  # the full run would have crossed the cap


def test_local_cpu_training_costs_nothing_and_is_metered(tmp_path):
    budgets = _setup(tmp_path, cap=1.0)
    res = train(_cfg(tmp_path, budgets, max_steps=2))
    assert not res["stopped_for_budget"] and res["global_step"] == 2
    recs = Ledger(tmp_path / "run" / "ledger", writer="check").records(kind="compute", phase="training")
    assert recs and sum(r["hours"] for r in recs) > 0 and sum(r["usd"] for r in recs) == 0


def test_a_skypilot_node_is_billed_as_the_instance_the_task_asked_for():
    h7, lora, tiny = (load_recipe(n).hardware for n in ("alpaca_7b", "alpaca_lora", "tiny"))
    sky = {"SKYPILOT_TASK_ID": "t", "SKYPILOT_NUM_GPUS_PER_NODE": "8"}
    assert billed_instance(h7, on_gpu=True, env=sky) == ("A100-80GB", 8)
    # the CPU rehearsal of an 8-GPU task is priced as that task's node
    assert billed_instance(h7, on_gpu=False, env={"SKYPILOT_TASK_ID": "t", "SKYPILOT_NUM_GPUS_PER_NODE": "0"}) == \
        ("A100-80GB", 8)
    assert billed_instance(lora, on_gpu=False, env={"SKYPILOT_TASK_ID": "t"}) == ("A100-80GB", 1)
    assert billed_instance(h7, on_gpu=False, env={}) is None  # a laptop CPU costs nothing
    assert billed_instance(h7, on_gpu=True, env={"LOCAL_WORLD_SIZE": "2"}) == ("A100-80GB", 2)
    assert billed_instance(tiny, on_gpu=False, env=sky) is None  # a laptop recipe

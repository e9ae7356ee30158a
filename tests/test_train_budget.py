"""Training meters its compute into the ledger and stops, with a checkpoint, before the cap."""
from __future__ import annotations

import json

import pytest
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


def test_local_cpu_training_costs_nothing_and_is_metered(tmp_path, capsys):
    """...and measures what the launch plan needs (issue 24): its own pace projected after 5% of the steps
    (at least 3), printed and in the ledger beside the run's plan interval; its checkpoint saves' bytes and
    seconds; its model load; and the tokens of its first max_steps steps as the plan counts them."""
    from transformers import AutoTokenizer

    from lib.budget.plans import plan_path
    from lib.core.files import atomic_write_json
    from lib.core.masking import encode_records, ensure_pad_token
    from lib.core.model import resolve_model
    from lib.launch.plan import first_steps_tokens
    from lib.train.data import read_training_records

    budgets = _setup(tmp_path, cap=1.0)
    # the run's plan: 1 to 2 s of compute and no checkpoint line (any interval: the test reads where the pace falls)
    atomic_write_json(plan_path(tmp_path / "run", "local"), {"task": "local", "created": 1.0, "overheads": [],
                                                             "compute_hours_interval": {"low": 1 / 3600, "high": 2 / 3600}})
    res = train(_cfg(tmp_path, budgets, max_steps=4, save_steps=2))
    assert not res["stopped_for_budget"] and res["global_step"] == 4
    ledger = Ledger(tmp_path / "run" / "ledger", writer="check")
    recs = ledger.records(kind="compute", phase="training")
    assert recs and sum(r["hours"] for r in recs) > 0 and sum(r["usd"] for r in recs) == 0
    pace = res["pace_projection"]
    assert pace["step"] == 3 and pace["steps"] == 4 and pace["saves_left"] == 1  # the save at step 4 is still ahead
    assert pace["projected_s"] == pytest.approx(pace["elapsed_s"] + 1 * pace["step_s"] + 1 * pace["save_s"])
    assert pace["save_s"] > 0 and (pace["plan_low_s"], pace["plan_high_s"]) == pytest.approx((1.0, 2.0))
    where = "inside" if 1 <= pace["projected_s"] <= 2 else ("below" if pace["projected_s"] < 1 else "above")
    assert pace["plan_verdict"].startswith(f"{where} the plan's 1-2 s")
    assert [r["projected_s"] for r in ledger.records(kind="projection")] == [pace["projected_s"]]
    assert f"pace: after 3 of 4 steps: training loop ~{pace['projected_s']:,.0f} s" in capsys.readouterr().out
    assert res["train_loop_seconds"] > pace["elapsed_s"]
    ck = res["checkpoint_write"]  # the bytes of both checkpoint directories, as written
    on_disk = sum(f.stat().st_size for d in (tmp_path / "model.checkpoints").glob("checkpoint-*")
                  for f in d.rglob("*") if f.is_file())
    assert ck["saves"] == 2 and ck["bytes"] == on_disk and ck["bytes_per_s"] == pytest.approx(ck["bytes"] / ck["seconds"])
    assert res["model_load"]["bytes"] == 4 * res["model_load"]["params"] and res["model_load"]["seconds"] > 0
    tok = AutoTokenizer.from_pretrained(resolve_model("embedded"))
    ensure_pad_token(tok)
    examples, _ = encode_records(read_training_records(tmp_path / "train.jsonl"), tok, fmt=load_recipe("tiny").format,
                                 max_length=48)
    assert res["trained_tokens"] == first_steps_tokens([len(e["input_ids"]) for e in examples], 2, 4)


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

"""The SFT entry point in-process: held-out split, CLI round trip, re-run after completion, bad input."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from lib.core.errors import UserError
from lib.core.params import declared_params, settings_argv, settings_from_params
from lib.core.paths import REPO
from lib.train.data import split_heldout
from lib.train.sft import NOTEBOOK_PARAMS, TrainConfig, parse_args, train


def _data(path, n=16):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"r{i}", "instruction": f"Echo {i}", "output": f"{i} " * (i % 4 + 1)}) + "\n")
    return str(path)


def test_heldout_split_is_deterministic_and_order_free():
    recs = [{"id": f"x{i}", "instruction": "a", "output": "b"} for i in range(30)]
    train_a, held_a = split_heldout(recs, 0.1, seed=3)
    train_b, held_b = split_heldout(list(reversed(recs)), 0.1, seed=3)
    assert len(held_a) == 4 and {r["id"] for r in held_a} == {r["id"] for r in held_b}
    assert not {r["id"] for r in held_a} & {r["id"] for r in train_a}
    # tiny data: the minimum of 4 gives way, never more than half is held out
    train_c, held_c = split_heldout(recs[:5], 0.1)
    assert len(held_c) == 2 and len(train_c) == 3
    with pytest.raises(UserError, match="too few"):
        split_heldout(recs[:1], 0.1)


# A value other than the default for every field, of the field's own type.
EVERY_FIELD = dict(recipe="vicuna_7b", data="d.jsonl", heldout="h.jsonl", output_dir="/o/model", checkpoint_dir="/c",
                   metrics_path="/o/m.json", model="tiny", model_override="$BASE_MODEL replaced x", max_steps=3,
                   num_train_epochs=2.5, learning_rate=1e-4, per_device_batch=2, grad_accum=8, max_length=96,
                   packing=False, seed=7, save_steps=5, spot=True, logging_steps=3, run_dir="runs/r", budgets_path="b.yaml",
                   hourly_usd=-2.0, fsdp=True, lora=False)


def test_every_field_round_trips_through_the_worker_command_line():
    assert set(EVERY_FIELD) == {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**EVERY_FIELD)
    assert all(getattr(cfg, f.name) != f.default for f in dataclasses.fields(TrainConfig))
    assert parse_args(settings_argv(cfg)) == cfg
    assert parse_args(settings_argv(TrainConfig())) == TrainConfig() and settings_argv(TrainConfig()) == []
    # each boolean in each of its states: None (the recipe's) is the flag left out
    for name in ("packing", "fsdp", "lora"):
        for value in (True, False, None):
            one = TrainConfig(**{name: value})
            assert parse_args(settings_argv(one)) == one


def test_booleans_are_typed_and_strict():
    assert TrainConfig().packing is None  # the recipe's
    got = parse_args(["--packing", "TRUE", "--fsdp=false", "--no-lora"])
    assert (got.packing, got.fsdp, got.lora) == (True, False, False)
    assert parse_args(["--packing"]).packing is True
    for bad in (["--packing", "maybe"], ["--fsdp", "yes"], ["--no-lora", "true"], ["--max-steps", "three"]):
        with pytest.raises(UserError) as e:
            parse_args(bad)
        assert "\n" not in str(e.value) and bad[0] in str(e.value)
    with pytest.raises(UserError, match="'maybe' is not a boolean: use true or false"):
        parse_args(["--packing", "maybe"])


def test_a_bad_boolean_on_the_command_line_is_one_line():
    r = subprocess.run([sys.executable, "-m", "lib.train.sft", "--packing", "maybe"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        "error: argument --packing/--no-packing: 'maybe' is not a boolean: use true or false (see --help)"]


def test_notebook_03_parameters_are_training_settings_or_its_own():
    declared = declared_params("03_train")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(declared) - fields == set(NOTEBOOK_PARAMS)
    cfg = settings_from_params(TrainConfig, {"packing": False, "max_steps": 4, "nproc": 2}, also=NOTEBOOK_PARAMS)
    assert (cfg.packing, cfg.max_steps) == (False, 4)
    with pytest.raises(UserError, match="TrainConfig has no setting 'pakcing' \\(did you mean 'packing'\\?\\)"):
        settings_from_params(TrainConfig, {"pakcing": False}, also=NOTEBOOK_PARAMS)


def test_rerun_after_completion_publishes_the_last_checkpoint_without_more_steps(tmp_path):
    cfg = TrainConfig(recipe="tiny", model="tiny", data=_data(tmp_path / "t.jsonl"), heldout=_data(tmp_path / "h.jsonl", 4),
                      output_dir=str(tmp_path / "model"), max_steps=2, save_steps=1, per_device_batch=2,
                      grad_accum=1, max_length=48)
    first = train(cfg)
    assert first["global_step"] == 2 and first["tuned_heldout_loss"] < first["base_heldout_loss"]
    (tmp_path / "model" / ".complete").unlink()  # as if killed between the last checkpoint and publishing
    again = train(cfg)
    assert again["resumed_from"].endswith("checkpoint-2") and again["global_step"] == 2
    assert (tmp_path / "model" / ".complete").exists()
    assert again["tuned_heldout_loss"] == pytest.approx(first["tuned_heldout_loss"], rel=1e-6)


def test_missing_data_is_one_clear_line(tmp_path):
    with pytest.raises(UserError, match="run the clean phase first"):
        train(TrainConfig(recipe="tiny", model="tiny", data=str(tmp_path / "nope.jsonl"), output_dir=str(tmp_path / "m")))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n{not json\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2 is not valid JSON"):
        train(TrainConfig(recipe="tiny", model="tiny", data=str(bad), output_dir=str(tmp_path / "m")))
    assert not (tmp_path / "m").exists()
    with pytest.raises(UserError, match="recipe tiny has no lora section"):
        train(TrainConfig(recipe="tiny", model="tiny", data=_data(tmp_path / "t.jsonl"), output_dir=str(tmp_path / "m"),
                          lora=True))
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("packing, micro", [(True, (16, 1)), (False, (4, 4))])
def test_the_layout_picks_the_recipes_micro_batch(tmp_path, packing, micro):
    """alpaca_7b packs 16 examples per micro-batch (same memory as Alpaca's padded 4) and pads 4 when packing is off."""
    cfg = TrainConfig(recipe="alpaca_7b", model="tiny", data=_data(tmp_path / "t.jsonl", 20),
                      output_dir=str(tmp_path / "model"), max_steps=1, max_length=48, packing=packing)
    m = train(cfg)
    assert (m["packing"], m["per_device_batch"], m["grad_accum"]) == (packing, *micro)
    assert m["packing_layout"] == ("varlen" if packing else "padded")


def test_save_steps_follow_young_daly_from_the_measured_pace():
    """03_train without save_steps: on spot, C = the model's checkpoint (parameters x 12 B) / the plan's write
    rate, M = 24 h / nodes by the plan's cited rate; after 3 steps the measured pace turns tau = sqrt(2 C M)
    into save_steps. Not on spot, or with an explicit save_steps, no callback: the end only / as set."""
    import math
    import time
    from types import SimpleNamespace

    from transformers import LlamaConfig, TrainerState

    from lib.budget.checkpoints import preemption_rate, rate
    from lib.budget.throughput import load_table
    from lib.train.recipes import load_recipe
    from lib.train.sft import save_interval

    h, i, layers, vocab = 64, 128, 2, 1000
    model = SimpleNamespace(config=LlamaConfig(hidden_size=h, intermediate_size=i, num_hidden_layers=layers,
                                               num_attention_heads=4, vocab_size=vocab))
    recipe, total = load_recipe("alpaca_7b"), 1_000_000
    args = dict(world=1, on_gpu=False, lora=False, main=True)
    assert save_interval(TrainConfig(spot=False), recipe, model, total, **args) == []
    assert save_interval(TrainConfig(spot=True, save_steps=7), recipe, model, total, **args) == []
    [cb] = save_interval(TrainConfig(spot=True), recipe, model, total, **args)
    table = load_table()
    c = (layers * (4 * h * h + 3 * h * i) + 2 * h * vocab) * 12 / rate(table, "checkpoint_write", "cpu")[0]
    m = 3600 / preemption_rate(table)[0]
    assert (cb.write_s, cb.mtbf_s) == (pytest.approx(c), pytest.approx(m))
    state = TrainerState()
    state.save_steps = total  # 03_train's start: the end only
    for _ in range(3):
        cb.on_step_begin(None, state, None)
        time.sleep(0.01)
        state.global_step += 1
        cb.on_step_end(None, state, None)
    got = cb.chosen
    assert got["tau_s"] == pytest.approx(math.sqrt(2 * c * m)) and got["tau_s"] < got["run_s"]
    assert state.save_steps == got["save_steps"] == max(1, round(got["tau_s"] / (got["run_s"] / total)))

"""The SFT entry point in-process: held-out split, CLI round trip, re-run after completion, bad input."""
from __future__ import annotations

import json

import pytest

from lib.core.errors import UserError
from lib.train.data import split_heldout
from lib.train.sft import TrainConfig, config_to_args, parse_args, train


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


def test_cli_round_trip():
    cfg = TrainConfig(recipe="vicuna_7b", model="tiny", data="d.jsonl", max_steps=3, learning_rate=1e-4, packing="false")
    assert parse_args(config_to_args(cfg)) == cfg


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


@pytest.mark.parametrize("packing, micro", [("true", (16, 1)), ("false", (4, 4))])
def test_the_layout_picks_the_recipes_micro_batch(tmp_path, packing, micro):
    """alpaca_7b packs 16 examples per micro-batch (same memory as Alpaca's padded 4) and pads 4 when packing is off."""
    cfg = TrainConfig(recipe="alpaca_7b", model="tiny", data=_data(tmp_path / "t.jsonl", 20),
                      output_dir=str(tmp_path / "model"), max_steps=1, max_length=48, packing=packing)
    m = train(cfg)
    assert (m["packing"], m["per_device_batch"], m["grad_accum"]) == (packing == "true", *micro)
    assert m["packing_layout"] == ("varlen" if packing == "true" else "padded")

"""The launch plan counts DPO's FLOPs (lib/launch/dpo_flops.py): policy forward + backward on
chosen and rejected, plus the reference forward every epoch unless stored; and the preference
budget phase exists, optional in older budget files."""
from __future__ import annotations

import pytest

from lib.budget import PHASES, load_budgets
from lib.launch.dpo_flops import dpo_flops_multiplier
from lib.launch.plan import describe_plan, make_plan


def test_dpo_flops_multiplier_by_hand():
    assert dpo_flops_multiplier(reference_stored=False) == pytest.approx(8 / 6)
    assert dpo_flops_multiplier(reference_stored=False, epochs=3) == pytest.approx(8 / 6)  # paid every epoch
    assert dpo_flops_multiplier(reference_stored=True, epochs=1) == pytest.approx(8 / 6)  # once = one epoch's
    assert dpo_flops_multiplier(reference_stored=True, epochs=3) == pytest.approx((6 + 2 / 3) / 6)
    with pytest.raises(ValueError):
        dpo_flops_multiplier(reference_stored=True, epochs=0)


def test_dpo_7b_plan_is_hand_checkable():
    p = make_plan("dpo_7b", "dpo_7b", accelerator="A100-80GB", gpus_per_node=8, nodes=1, data=None,
                  tokens_override=16_000_000, overhead_hours=0.3)
    assert p.trained_tokens == pytest.approx(16e6 * 1 * 8 / 6)
    assert p.compute_hours == pytest.approx(16e6 * 8 / 6 / (1500 * 8) / 3600)
    text = "\n".join(describe_plan(p))
    assert "x1.3333 SFT FLOPs per pair token" in text and "21,333,333 SFT-equivalent tokens" in text
    sft = make_plan("train_7b", "alpaca_7b", accelerator="A100-80GB", gpus_per_node=8, nodes=1, data=None,
                    tokens_override=16_000_000)
    assert sft.trained_tokens == 16e6 * 3 and sft.hyperparameters["dpo"] is None  # SFT plans unchanged


def test_preference_phase_is_budgeted_and_optional(tmp_path):
    assert "preference" in PHASES
    pb = load_budgets().phase("preference")
    assert 0 < pb.target <= pb.cap
    old = tmp_path / "budgets.yaml"
    old.write_text("currency: USD\nphases:\n" + "".join(f"  {p}: {{target: 1, cap: 2}}\n"
                                                       for p in ("data", "training", "evaluation", "serving")))
    assert load_budgets(old).phase("preference").cap == 0  # not planned: nothing billed may be spent on it

"""DPO (lib/train/dpo.py) with TRL's DPOTrainer: prompt tokens are the inference prompt, the
recipes carry alignment-handbook's Zephyr values, and a tiny run learns the held-out preference."""
from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from lib.budget import Ledger, load_budgets
from lib.core.errors import UserError
from lib.core.masking import encode_preference, prompt_ids
from lib.core.model import resolve_model
from lib.train.dpo import DpoSettings, train_dpo
from lib.train.recipes import load_recipe

COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown", "grey", "gold"]


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(resolve_model("embedded"))


@pytest.mark.parametrize("fmt", ["alpaca", "chat", "vicuna_v1.1"])
def test_dpo_prompt_tokens_are_exactly_the_inference_prompt(tok, fmt):
    prompt = [{"role": "user", "content": "Name a colour.\n\nOne word, please."}]
    ex, truncated = encode_preference(fmt, prompt, "Blue.", "I cannot answer that, sorry.", tok, 160)
    assert ex["prompt_ids"] == prompt_ids(fmt, prompt, tok) and not truncated
    for side, text in (("chosen_ids", "Blue."), ("rejected_ids", "I cannot answer that, sorry.")):
        assert ex[side][-1] == tok.eos_token_id  # every answer ends in EOS: the model learns to stop
        assert tok.decode(ex[side][:-1]).strip() == text
    # Too long: the answer is cut, the prompt is not, and EOS stays last.
    cut, truncated = encode_preference(fmt, prompt, "Blue. " * 60, "No.", tok, len(ex["prompt_ids"]) + 6)
    assert truncated and cut["prompt_ids"] == ex["prompt_ids"] and len(cut["chosen_ids"]) == 6
    assert cut["chosen_ids"][-1] == tok.eos_token_id
    # An empty answer (a model that stopped at once) is EOS alone, after the same prompt ids.
    empty, _ = encode_preference(fmt, prompt, "Blue.", "  ", tok, 160)
    assert empty["rejected_ids"] == [tok.eos_token_id] and empty["prompt_ids"] == ex["prompt_ids"]


def test_dpo_recipes_carry_zephyr_values():
    full, lora = load_recipe("dpo_7b"), load_recipe("dpo_lora")
    # alignment-handbook recipes/zephyr-7b-beta/dpo/config_full.yaml
    assert (full.dpo.beta, full.learning_rate, full.num_train_epochs, full.lr_scheduler_type) == (0.01, 5e-7, 1, "cosine")
    assert (full.warmup_ratio, full.max_length, full.effective_batch) == (0.1, 1024, 128)
    assert full.lora is None and full.dpo.precompute_ref_log_probs
    # ... dpo/config_qlora.yaml: LoRA r 16, alpha 16 on every projection, lr 5e-6
    assert (lora.dpo.beta, lora.learning_rate, lora.lora.r, lora.lora.alpha) == (0.01, 5e-6, 16, 16)
    assert set(lora.lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert load_recipe("dpo_embedded").dpo is not None and load_recipe("alpaca_7b").dpo is None


def write_pairs(path, n: int) -> None:
    """Prompts that differ in a number; the chosen answer names the colour, the rejected refuses."""
    with open(path, "w") as f:
        for i in range(n):
            c = COLOURS[i % len(COLOURS)]
            f.write(json.dumps({"id": f"p{i}", "source": "judge", "question_id": f"q{i}",
                                "prompt": [{"role": "user", "content": f"Name the colour of item {i}: {c}."}],
                                "chosen": f"{c.capitalize()}.", "rejected": "I cannot answer that."}) + "\n")


def _run(tmp_path, model: str, n_pairs: int, steps: int, **kw) -> dict:
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, n_pairs)
    return train_dpo(DpoSettings(recipe="dpo_embedded", pairs=str(pairs), model=model, max_steps=steps,
                                 output_dir=str(tmp_path / "model_dpo"), run_dir=str(tmp_path), **kw))


def _assert_learned(m: dict) -> None:
    held = m["heldout_curve"]
    assert held[0]["step"] == 0 and len(held) >= 3  # measured before the first step, then during training
    # At step 0 the policy is the reference: every reward is 0, so no pair is "won" yet.
    assert held[0]["margin"] == pytest.approx(0, abs=1e-4) and held[0]["accuracy"] == 0
    assert held[-1]["accuracy"] > held[0]["accuracy"] and held[-1]["accuracy"] >= 0.75
    assert held[-1]["margin"] > held[1]["margin"] > held[0]["margin"]


def test_tiny_dpo_run_raises_heldout_preference_accuracy_and_margin(tmp_path):
    m = _run(tmp_path, "tiny", 24, 12, eval_steps=4, learning_rate=3e-3)
    _assert_learned(m)
    assert m["train_pairs"] + m["heldout_pairs"] == 24 and m["heldout_pairs"] == 6
    assert m["optimizer_steps"] == 12 and m["precompute_ref_log_probs"] and m["beta"] == 0.1
    assert (tmp_path / "model_dpo" / ".complete").exists()
    assert json.loads((tmp_path / "prefer" / "dpo_metrics.json").read_text())["heldout_curve"] == m["heldout_curve"]
    compute = Ledger(tmp_path / "ledger", writer="check", budgets=load_budgets()).records(kind="compute")
    assert compute and all(r["phase"] == "preference" and r["purpose"] == "dpo" for r in compute)


@pytest.mark.full
def test_embedded_dpo_run_raises_heldout_preference_accuracy_and_margin(tmp_path):
    """SmolLM2-135M on CPU: about 9 minutes on 2 busy cores (2026-12-06), hence `full`."""
    m = _run(tmp_path, "embedded", 24, 8, eval_steps=2)
    _assert_learned(m)


def test_bad_dpo_settings_fail_in_one_line_before_training(tmp_path):
    with pytest.raises(UserError, match="no dpo section"):
        train_dpo(DpoSettings(recipe="alpaca_7b", pairs="x", output_dir=str(tmp_path / "m")))
    with pytest.raises(UserError, match="no preference pairs"):
        train_dpo(DpoSettings(output_dir=str(tmp_path / "m")))
    with pytest.raises(UserError, match="preference pairs"):
        train_dpo(DpoSettings(pairs=str(tmp_path / "missing.jsonl"), output_dir=str(tmp_path / "m")))
    assert not (tmp_path / "m").exists()


def test_reference_logps_in_memory_equal_trls_own_precompute(tmp_path):
    """lib.train.dpo keeps the reference log-probs in memory (TRL's cache file is per process under
    torchrun, `with_reference_logps`): on one process they must equal what TRL's own precompute stores."""
    import torch
    from trl import DPOTrainer

    from lib.train.dpo import dataset, dpo_arguments, encode_pairs, pretokenized_trainer
    from lib.train.model import load_tokenizer_and_model

    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, 6)
    recipe = load_recipe("dpo_embedded")
    tok, model, _ = load_tokenizer_and_model(recipe, "tiny", 0, on_gpu=False)
    ex, _ = encode_pairs([json.loads(ln) for ln in pairs.read_text().splitlines()], tok, recipe.format, 160)
    args = dpo_arguments(DpoSettings(), recipe, model, tmp_path / "ckpt", per_device=4, accum=1, epochs=1,
                         max_length=160, total_steps=1, on_gpu=False, heldout=False)
    trainer = pretokenized_trainer()(model=model, args=args, train_dataset=dataset(ex), processing_class=tok)
    ours = trainer.train_dataset
    trls = DPOTrainer._precompute_ref_logps(trainer, dataset(ex), "train", 4)
    for col in ("ref_chosen_logps", "ref_rejected_logps"):
        assert torch.allclose(torch.tensor(ours[col]), torch.tensor(trls[col]), atol=1e-5), col
    assert len(set(ours["ref_chosen_logps"])) > 1  # real, per-pair values

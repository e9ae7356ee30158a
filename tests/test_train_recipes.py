"""Recipes as data: seed hyperparameters, consistent batch arithmetic, clear errors."""
from __future__ import annotations

import pytest

from lib.core.errors import UserError
from lib.train.recipes import list_recipes, load_recipe

FULL_SIZE = ["alpaca_7b", "alpaca_13b", "vicuna_7b", "vicuna_13b", "gpt4all_lora", "alpaca_lora", "belle_zh", "chatglm"]


def test_every_seed_recipe_is_present():
    assert set(FULL_SIZE) | {"embedded", "tiny"} <= set(list_recipes())


@pytest.mark.parametrize("name", FULL_SIZE)
def test_effective_batch_is_per_device_times_accum_times_gpus_times_nodes(name):
    r = load_recipe(name)
    h = r.hardware
    assert r.is_full_size and h.gpus_per_node >= 1 and h.nodes >= 1
    assert h.per_device_batch * h.grad_accum * h.gpus_per_node * h.nodes == r.effective_batch == 128
    for packing in (True, False):  # both layouts keep the seed's effective batch
        b, a = h.micro_batch(packing)
        assert b * a * h.gpus_per_node * h.nodes == 128
    assert h.expected_hours > 0 and h.expected_usd > 0 and h.price_basis


def test_alpaca_packs_more_examples_per_micro_batch_and_pads_like_the_seed():
    for name in ("alpaca_7b", "alpaca_13b"):
        h = load_recipe(name).hardware
        assert h.micro_batch(packing=False) == (4, 4)  # stanford_alpaca's per-device 4, accumulation 4 on 8 GPUs
        b, a = h.micro_batch(packing=True)
        assert b > 4 and b * a == 16


def test_alpaca_seed_hyperparameters():
    a7, a13 = load_recipe("alpaca_7b"), load_recipe("alpaca_13b")
    assert (a7.learning_rate, a7.num_train_epochs, a7.max_length, a7.lr_scheduler_type) == (2e-5, 3, 512, "cosine")
    assert (a7.warmup_ratio, a7.weight_decay, a7.bf16, a7.format) == (0.03, 0.0, True, "alpaca")
    assert (a13.learning_rate, a13.num_train_epochs, a13.max_length) == (1e-5, 5, 512)
    assert a7.hardware.expected_usd <= 100 and a7.hardware.expected_hours == 3


@pytest.mark.parametrize("name", ["vicuna_7b", "vicuna_13b"])
def test_vicuna_seed_hyperparameters(name):
    v = load_recipe(name)
    assert (v.format, v.max_length, v.gradient_checkpointing, v.attn_implementation) == ("vicuna_v1.1", 2048, True, "sdpa")
    assert (v.learning_rate, v.num_train_epochs, v.fsdp) == (2e-5, 3, True)


def test_vicuna_costs_follow_the_seed():
    assert load_recipe("vicuna_13b").hardware.expected_usd == 300
    assert load_recipe("vicuna_7b").hardware.expected_usd == 140


def test_lora_recipes():
    g = load_recipe("gpt4all_lora")
    assert (g.lora.r, g.lora.alpha, g.lora.dropout, g.learning_rate, g.max_length) == (8, 32, 0.1, 5e-5, 1024)
    a = load_recipe("alpaca_lora")
    assert (a.lora.r, a.lora.alpha, sorted(a.lora.target_modules)) == (8, 16, ["q_proj", "v_proj"])
    assert a.hardware.gpus_per_node == 1 and not a.fsdp


def test_chinese_recipes_use_supported_families():
    import transformers

    b, c = load_recipe("belle_zh"), load_recipe("chatglm")
    assert (b.family, b.language) == ("bloom", "zh") and "bloomz" in b.base_model
    assert c.family == "glm" and c.format == "chat" and hasattr(transformers, "GlmForCausalLM")


def _write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return str(p)


def test_bad_recipes_get_one_clear_line(tmp_path):
    base = open(load_recipe.__globals__["recipe_path"]("alpaca_7b")).read()
    with pytest.raises(UserError, match=r"unknown key 'learning_rat'.*did you mean 'learning_rate'"):
        load_recipe(_write(tmp_path, base.replace("learning_rate:", "learning_rat:")))
    with pytest.raises(UserError, match="not effective_batch 128"):
        load_recipe(_write(tmp_path, base.replace("  grad_accum: 1 ", "  grad_accum: 2 ")))
    with pytest.raises(UserError, match="not effective_batch 128: fix hardware.padded_grad_accum"):
        load_recipe(_write(tmp_path, base.replace("padded_grad_accum: 4", "padded_grad_accum: 2")))
    with pytest.raises(UserError, match="unknown recipe 'alpaca7b'.*did you mean 'alpaca_7b'"):
        load_recipe("alpaca7b")
    with pytest.raises(UserError, match="not valid YAML"):
        load_recipe(_write(tmp_path, "name: [unclosed"))

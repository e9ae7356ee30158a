"""Tiny random models of each recipe's architecture family, built from a config (no download).

Every full-size recipe has a tiny form that runs on CPU in seconds: same model class (so the
same FSDP wrap class, the same attention/mask code path, the same LoRA target names), a
few layers of width 64, random weights (seeded), and the embedded SmolLM2 tokenizer.
"""
from __future__ import annotations

from lib.core.errors import UserError

FAMILIES = ("llama", "bloom", "glm", "qwen2", "mistral")


def tiny_config(family: str, vocab_size: int, *, hidden: int = 64, layers: int = 2, heads: int = 4,
                bos_token_id=None, eos_token_id=None, pad_token_id=None):
    import transformers as tf

    common = dict(vocab_size=vocab_size, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                  pad_token_id=pad_token_id, tie_word_embeddings=True)
    # LLaMA-style decoders share one shape: grouped-query attention with two query heads per KV head.
    decoder = dict(hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                   num_attention_heads=heads, num_key_value_heads=heads // 2, max_position_embeddings=4096, **common)
    if family in ("llama", "mistral", "qwen2"):
        return {"llama": tf.LlamaConfig, "mistral": tf.MistralConfig, "qwen2": tf.Qwen2Config}[family](**decoder)
    if family == "glm":
        return tf.GlmConfig(head_dim=hidden // heads, **decoder)
    if family == "bloom":
        return tf.BloomConfig(hidden_size=hidden, n_layer=layers, n_head=heads, **common)
    raise UserError(f"no tiny form for architecture family {family!r}: use one of {', '.join(FAMILIES)}")


def tiny_model(family: str, tokenizer, *, seed: int = 0, attn_implementation: str | None = None, **kw):
    import torch
    from transformers import AutoModelForCausalLM

    if attn_implementation is None or attn_implementation.startswith("flash"):
        attn_implementation = "eager" if family == "bloom" else "sdpa"  # BLOOM has no SDPA path; no flash on CPU
    cfg = tiny_config(family, len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **kw)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation=attn_implementation)
    return model

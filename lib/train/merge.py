"""LoRA adapters merged into their base: serving and judging need a plain checkpoint.

Training merges right after the last step (lib/train/sft.py); lib/serve/run_model.py merges
a run whose model/ holds only adapters.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from lib.train.tiny import tiny_model


def merge_lora(adapter_dir: Path, recipe, model_src: str, tok, *, seed: int) -> Path:
    """`<adapter_dir>-merged/`: a fresh copy of the base (`model_src`; "tiny:<family>" rebuilds
    the seeded random model training started from) with the adapters merged in, and the
    adapters themselves kept under `adapter/`. Replaces an older merge."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if model_src.startswith("tiny:"):
        base = tiny_model(recipe.family, tok, seed=seed, attn_implementation=recipe.attn_implementation)
    else:
        base = AutoModelForCausalLM.from_pretrained(model_src, dtype=torch.float32)
        if base.get_input_embeddings().weight.shape[0] != len(tok):
            base.resize_token_embeddings(len(tok))
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    out = adapter_dir.with_name(adapter_dir.name + "-merged")
    if out.exists():
        shutil.rmtree(out)
    merged.save_pretrained(out)
    shutil.copytree(adapter_dir, out / "adapter", ignore=shutil.ignore_patterns("*.tmp"))
    return out

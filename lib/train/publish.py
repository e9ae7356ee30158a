"""The fine-tuned model, published: gathered to rank 0, LoRA adapters merged into the base,
tokenizer and generation config beside it, renamed into `output_dir` with `.complete`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from lib.core.files import publish_dir
from lib.train.dist import barrier
from lib.train.merge import merge_lora
from lib.train.vocab import TOKENIZER_FILE

# What a checkpoint holds besides the model: left behind when a finished run's last
# checkpoint is published as the model.
TRAINING_STATE = ("optimizer*", "scheduler.pt", "rng_state*", "trainer_state.json", "pytorch_model_fsdp*", ".complete*")


def publish_model(trainer, tok, out_dir: Path, *, recipe, model_src: str, seed: int, lora: bool,
                  finished: Path | None, main: bool) -> None:
    """Write the trained model aside and rename it into `out_dir`. Every rank calls it: under
    FSDP `save_model` gathers the full state dict on rank 0 (CPU offload). `finished`: the last
    checkpoint of a run killed after it but before publishing, copied instead of saved again."""
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if main and tmp.exists():
        shutil.rmtree(tmp)
    barrier()
    if finished is None:
        trainer.save_model(str(tmp))
    elif main:
        shutil.copytree(finished, tmp, ignore=shutil.ignore_patterns(*TRAINING_STATE))
    barrier()
    if not main:
        return
    final_src = merge_lora(tmp, recipe, model_src, tok, seed=seed) if lora else tmp
    tok.save_pretrained(final_src)
    keep_sentencepiece_model(tok, model_src, final_src)
    write_generation_config(final_src, tok)
    publish_dir(final_src, out_dir, note=json.dumps({"recipe": recipe.name, "base": model_src}) + "\n")
    if final_src != tmp:
        shutil.rmtree(tmp, ignore_errors=True)


def keep_sentencepiece_model(tok, model_src: str, model_dir: Path) -> None:
    """A SentencePiece base's tokenizer.model goes with the trained model: a fast tokenizer's
    save_pretrained writes only tokenizer.json, and llama.cpp's GGUF converter reads the piece
    scores from tokenizer.model (without it every piece scores the same and the GGUF segments
    text differently from training; lib/train/vocab.py, lib/serve/export.py)."""
    if (model_dir / TOKENIZER_FILE).exists():
        return
    for cand in (getattr(tok, "vocab_file", None), Path(model_src) / TOKENIZER_FILE):
        if cand and Path(cand).is_file() and Path(cand).name == TOKENIZER_FILE:
            shutil.copy2(cand, model_dir / TOKENIZER_FILE)
            return


def write_generation_config(model_dir: Path, tok) -> None:
    """BOS/EOS/pad of the tokenizer the model was trained with (a base's own may name others)."""
    from transformers import GenerationConfig

    gc = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    gc.save_pretrained(model_dir)

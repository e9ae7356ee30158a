"""The model a recipe trains: base checkpoint and tokenizer (or a tiny random model of the
recipe's family), found before any worker starts, and what of it learns: LoRA adapters when
the recipe has them, only the new embedding rows in stage 1 of a vocabulary extension.
"""
from __future__ import annotations

from lib.core.errors import UserError
from lib.core.model import checked_tokenizer, resolve_model
from lib.core.masking import ensure_pad_token
from lib.train.recipes import load_recipe
from lib.train.tiny import tiny_model
from lib.train.vocab import freeze_old_rows


def check_base_model(recipe: str, model: str = "") -> str:
    """The base model's id, once its config and tokenizer are found (seconds, no weights):
    a cloud run whose base model cannot be loaded stops here with one line naming it, before
    any worker starts or any GPU-hour is paid. `model` "" = the recipe's base.
    Returns the id that will be trained."""
    name = model or load_recipe(recipe).base_model
    if name != "tiny":
        load_tokenizer(name)
        plain_config(resolve_model(name))
    return name


def _cannot_load(name: str, e: Exception) -> UserError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    return UserError(f"cannot load base model {name!r} ({first}): pass --env BASE_MODEL=<path or hub id> to the "
                     "sky task (model=... to 03_train) or make it reachable (network, HF_TOKEN)")


def load_tokenizer(name: str):
    try:
        return checked_tokenizer(resolve_model(name), "give a checkpoint directory with its own tokenizer files")
    except (OSError, ValueError) as e:  # offline hub misses are OSError/ValueError subclasses
        raise _cannot_load(name, e) from None


def plain_config(src: str):
    """The model config without a stale `quantization_config: gguf` (the embedded checkpoint
    was de-quantised from a GGUF; its weights are plain fp32, but Trainer refuses to fine-tune
    anything whose config still says quantized)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(src)
    except (OSError, ValueError) as e:
        raise _cannot_load(src, e) from None
    qc = getattr(config, "quantization_config", None)
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    if method == "gguf":
        del config.quantization_config
    return config


def load_tokenizer_and_model(recipe, model_name: str, seed: int, *, on_gpu: bool):
    """(tokenizer with a pad token, model, source): `model_name` "" = the recipe's base,
    "tiny" = a seeded random model of the recipe's family (source "tiny:<family>")."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = model_name or recipe.base_model
    if name == "tiny":
        tok = AutoTokenizer.from_pretrained(resolve_model("embedded"))
        ensure_pad_token(tok)
        return (tok, tiny_model(recipe.family, tok, seed=seed, attn_implementation=recipe.attn_implementation),
                "tiny:" + recipe.family)
    src = resolve_model(name)
    tok = load_tokenizer(name)
    # Full fine-tunes keep fp32 master weights (FSDP's bf16 mixed precision computes in bf16,
    # as Alpaca's recipe did); LoRA freezes the base, so it is stored in bf16 to save memory.
    dtype = torch.bfloat16 if (on_gpu and recipe.bf16 and recipe.lora is not None) else torch.float32
    kw = {}
    if recipe.lora is not None and recipe.lora.quantize == "4bit":
        if not on_gpu:
            raise UserError("QLoRA (lora.quantize: 4bit) needs a CUDA GPU and bitsandbytes: use lora without quantize on CPU")
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                       bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, attn_implementation=recipe.attn_implementation,
                                                 config=plain_config(src), **kw)
    if ensure_pad_token(tok):
        model.resize_token_embeddings(len(tok))
    model.config.pad_token_id = tok.pad_token_id
    return tok, model, src


def make_trainable(model, recipe, *, lora: bool, gradient_checkpointing: bool):
    """The model with what the recipe trains: LoRA adapters (when `lora`), and for stage 1 of a
    vocabulary extension (lib/train/vocab.py) only the new embedding rows."""
    if lora:
        model = add_lora(model, recipe.lora, gradient_checkpointing)
    if recipe.trainable == "new_embeddings":
        freeze_old_rows(model, recipe.new_embeddings_from)
    return model


def add_lora(model, lora, gradient_checkpointing: bool):
    """The model wrapped with the recipe's LoRA adapters (QLoRA: prepared for 4-bit training first)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if lora.quantize == "4bit":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                     target_modules=list(lora.target_modules), modules_to_save=list(lora.modules_to_save) or None,
                     task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, cfg)
    except ValueError as e:
        raise UserError(f"LoRA targets {lora.target_modules} do not match this model ({e}): fix lora.target_modules") from None

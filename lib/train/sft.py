"""Supervised fine-tuning, top to bottom: recipe -> data -> masking -> model -> Trainer -> save.

One process (the notebook calls `train(TrainConfig(...))`):

    python -m lib.train.sft --recipe embedded --data runs/dev/data/train.jsonl \
        --heldout runs/dev/data/heldout.jsonl --output-dir runs/dev/model --run-dir runs/dev

Many processes, one node or many (FSDP; SkyPilot sets SKYPILOT_NODE_IPS / _NODE_RANK /
_NUM_GPUS_PER_NODE, and `lib.train.fsdp.torchrun_command` turns them into a torchrun line):

    python -m torch.distributed.run --nproc_per_node=8 -m lib.train.sft --recipe alpaca_7b ...

Restarting the same command resumes from the newest complete checkpoint in
`--checkpoint-dir` (put it on a bucket mount in the cloud). The final model is written to a
temporary directory and renamed into `--output-dir` with a `.complete` marker; metrics
(held-out loss of base and tuned model, loss curve, throughput) go to `--metrics-path`.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lib.core.errors import UserError, cli
from lib.core.files import atomic_write_json, publish_dir
from lib.train.data import read_training_records


@dataclass
class TrainConfig:
    recipe: str = "embedded"  # name in lib/recipes/ or a .yaml path
    data: str = ""  # training records (Alpaca or ShareGPT JSONL)
    heldout: str = ""  # held-out records for base vs tuned loss ("" = none)
    output_dir: str = ""  # final Hugging Face checkpoint (written atomically, with .complete)
    checkpoint_dir: str = ""  # resumable Trainer checkpoints ("" = <output_dir>.checkpoints)
    metrics_path: str = ""  # metrics JSON ("" = <output_dir>/../train/metrics.json)
    model: str = ""  # "" = the recipe's base; "embedded"; "tiny" = random model of the recipe's family
    model_override: str = ""  # what replaced the profile's model, e.g. "$BASE_MODEL" ("" = none): for the record
    max_steps: int = 0  # 0 = run the recipe's epochs
    num_train_epochs: float = 0.0  # 0 = recipe
    learning_rate: float = 0.0  # 0 = recipe
    per_device_batch: int = 0  # 0 = recipe
    grad_accum: int = 0  # 0 = recipe
    max_length: int = 0  # 0 = recipe
    packing: str = "recipe"  # "recipe" | "true" | "false"
    seed: int = 42
    save_steps: int = 0  # 0 = about 4 checkpoints per run
    logging_steps: int = 1
    run_dir: str = ""  # when set: compute intervals go to <run_dir>/ledger, capped by budgets.yaml
    budgets_path: str = ""
    hourly_usd: float = -1.0  # per node; -1 = $0 on CPU, the catalog price on GPUs
    fsdp: str = "auto"  # "auto" = recipe's choice when more than one process; "true" | "false"
    lora: str = "recipe"  # "recipe" | "false": the tiny forms keep the recipe's LoRA


# ---------------------------------------------------------------------------- data


# ---------------------------------------------------------------------------- model


def check_base_model(cfg: TrainConfig) -> str:
    """The base model's id, once its config and tokenizer are found (seconds, no weights):
    a cloud run whose base model cannot be loaded stops here with one line naming it, before
    any worker starts or any GPU-hour is paid. Returns the id that will be trained."""
    from lib.train.recipes import load_recipe

    name = cfg.model or load_recipe(cfg.recipe).base_model
    if name != "tiny":
        _load_tokenizer(name)
        _plain_config(_resolved(name))
    return name


def _resolved(name: str) -> str:
    from lib.core.model import resolve_model

    return resolve_model(name)


def _cannot_load(name: str, e: Exception) -> UserError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    return UserError(f"cannot load base model {name!r} ({first}): pass --env BASE_MODEL=<path or hub id> to the "
                     "sky task (model=... to 03_train) or make it reachable (network, HF_TOKEN)")


def _load_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(_resolved(name))
    except (OSError, ValueError) as e:  # offline hub misses are OSError/ValueError subclasses
        raise _cannot_load(name, e) from None


def load_tokenizer_and_model(recipe, model_name: str, seed: int, *, on_gpu: bool):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lib.core.model import resolve_model
    from lib.train.masking import ensure_pad_token
    from lib.train.tiny import tiny_model

    name = model_name or recipe.base_model
    if name == "tiny":
        tok = AutoTokenizer.from_pretrained(resolve_model("embedded"))
        ensure_pad_token(tok)
        return (tok, tiny_model(recipe.family, tok, seed=seed, attn_implementation=recipe.attn_implementation),
                "tiny:" + recipe.family)
    src = resolve_model(name)
    tok = _load_tokenizer(name)
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
                                                 config=_plain_config(src), **kw)
    if ensure_pad_token(tok):
        model.resize_token_embeddings(len(tok))
    model.config.pad_token_id = tok.pad_token_id
    return tok, model, src


def _plain_config(src: str):
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


def add_lora(model, lora, gradient_checkpointing: bool):
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


# ---------------------------------------------------------------------------- helpers


def _world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _dist_barrier():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# ---------------------------------------------------------------------------- train


def train(cfg: TrainConfig) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments, set_seed

    from lib.budget import gpu_hourly_usd
    from lib.train.callbacks import BudgetCallback, CompleteMarkerCallback, KillAtStepCallback, ThroughputCallback
    from lib.train.checkpoints import latest_complete, set_aside_incomplete
    from lib.train.fsdp import billed_instance, fsdp_config
    from lib.train.masking import encode_records
    from lib.train.metrics import device_peak_flops, heldout_loss, model_shape, non_embedding_params
    from lib.train.packing import (MeteredCollator, TokenMeter, make_collator, prepare_for_packing,
                                   supports_packing)
    from lib.train.recipes import load_recipe

    rank, world = _world()
    main = rank == 0
    on_gpu = torch.cuda.is_available()
    recipe = load_recipe(cfg.recipe)
    if not cfg.data:
        raise UserError("no training data: pass --data path/to/clean.jsonl")
    if not cfg.output_dir:
        raise UserError("no output directory: pass --output-dir where the fine-tuned model goes")
    out_dir = Path(cfg.output_dir).resolve()
    ckpt_dir = Path(cfg.checkpoint_dir or str(out_dir) + ".checkpoints").resolve()
    metrics_path = Path(cfg.metrics_path or out_dir.parent / "train" / "metrics.json").resolve()
    max_length = cfg.max_length or recipe.max_length
    packing = recipe.packing if cfg.packing == "recipe" else cfg.packing.lower() in ("1", "true", "yes")
    t_start = time.time()

    # Budget first: a bad budgets.yaml must fail before any compute is spent.
    ledger = guard = budgets = None
    if cfg.run_dir:
        from lib.budget import BudgetGuard, Ledger, load_budgets

        budgets = load_budgets(cfg.budgets_path or None)
        ledger = Ledger(Path(cfg.run_dir) / "ledger", writer=f"train-{rank}" if world > 1 else "train",
                        budgets=budgets)
        guard = BudgetGuard(budgets, ledger, phase="training")

    set_seed(cfg.seed)
    if recipe.format == "text":  # continued pretraining: raw documents, streamed (lib/train/text.py)
        from lib.train.text import corpus_files

        corpus_files(cfg.data)  # fail on a missing corpus before the model loads
    else:
        train_records = read_training_records(cfg.data)
        held_records = read_training_records(cfg.heldout) if cfg.heldout else []
    tok, model, model_src = load_tokenizer_and_model(recipe, cfg.model, cfg.seed, on_gpu=on_gpu)
    if recipe.format == "text":  # fixed blocks of max_length tokens: no padding, every token a label
        from lib.train.text import BlockStats, encode_corpus

        train_ex, report = encode_corpus(cfg.data, tok, max_length,
                                         cache_dir=ckpt_dir.with_name(ckpt_dir.name + ".blocks") / f"rank{rank}")
        held_ex, held_report = encode_corpus(cfg.heldout, tok, max_length) if cfg.heldout else ([], BlockStats())
    else:
        train_ex, report = encode_records(train_records, tok, fmt=recipe.format, max_length=max_length)
        held_ex, held_report = encode_records(held_records, tok, fmt=recipe.format, max_length=max_length)
    if main:
        print(report.summary())
    if not train_ex:
        raise UserError(f"no trainable samples out of {report.total} ({report.summary()}): check the data format "
                        f"({recipe.format}) and max_length={max_length}")

    if packing and not supports_packing(model):
        if main:
            print(f"packing: {type(model).__name__} takes no position_ids (ALiBi/absolute positions); "
                  "using per-batch padding instead", file=sys.stderr)
        packing = False
    layout = prepare_for_packing(model) if packing else "padded"
    if not packing:
        model.config.use_cache = False
    # The micro-batch follows the layout: packed micro-batches hold more examples in the same memory.
    per_device, accum = recipe.hardware.micro_batch(packing)
    per_device, accum = cfg.per_device_batch or per_device, cfg.grad_accum or accum
    pad_collator = make_collator(tok, packing=False)

    # Base model loss, before any update (and before LoRA, which starts as the identity anyway).
    base_loss = heldout_loss(model, held_ex, pad_collator) if (held_ex and main) else None

    use_fsdp = (cfg.fsdp == "true") or (cfg.fsdp == "auto" and world > 1 and recipe.fsdp)
    grad_ckpt = recipe.gradient_checkpointing and on_gpu
    lora_on = recipe.lora is not None and cfg.lora != "false"
    if lora_on:
        model = add_lora(model, recipe.lora, grad_ckpt)
    if recipe.trainable == "new_embeddings":  # stage 1 of a vocabulary extension (lib/train/vocab.py)
        from lib.train.vocab import freeze_old_rows

        freeze_old_rows(model, recipe.new_embeddings_from)
    n_params = non_embedding_params(model)
    n_layers, d_model = model_shape(model.get_base_model() if lora_on else model)

    steps_per_epoch = math.ceil(len(train_ex) / (per_device * accum * world))
    total_steps = cfg.max_steps or math.ceil(steps_per_epoch * (cfg.num_train_epochs or recipe.num_train_epochs))
    save_steps = cfg.save_steps or max(1, total_steps // 4)
    meter = TokenMeter()
    collator = MeteredCollator(make_collator(tok, packing=packing, layout=layout, row_tokens=max_length), meter)
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accum,
        learning_rate=cfg.learning_rate or recipe.learning_rate,
        num_train_epochs=cfg.num_train_epochs or recipe.num_train_epochs,
        max_steps=cfg.max_steps or -1,
        lr_scheduler_type=recipe.lr_scheduler_type,
        warmup_steps=recipe.warmup_steps or recipe.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        weight_decay=recipe.weight_decay,
        bf16=bool(recipe.bf16 and on_gpu),
        gradient_checkpointing=grad_ckpt and not use_fsdp,  # FSDP checkpoints activations itself
        gradient_checkpointing_kwargs={"use_reentrant": False},  # works with frozen (LoRA) inputs
        fsdp=use_fsdp,
        fsdp_config=fsdp_config(model, activation_checkpointing=grad_ckpt) if use_fsdp else None,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=2,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        use_cpu=not on_gpu,
        ddp_backend="gloo" if (world > 1 and not on_gpu) else None,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        # Trainer sums every micro-batch's non-padding tokens over all ranks into its state (saved
        # in each checkpoint, so a resumed run keeps counting): metrics.json's trained_tokens.
        include_num_input_tokens_seen="non_padding",
    )

    callbacks = [CompleteMarkerCallback()]
    peak, peak_src = device_peak_flops() if main else (None, "")
    throughput = ThroughputCallback(meter, n_params=n_params, n_layers=n_layers, d_model=d_model,
                                    peak_flops=peak, world_size=world)
    callbacks.append(throughput)
    budget_cb = None
    if ledger is not None:
        hourly = cfg.hourly_usd
        price_src = "given"
        nodes = int(os.environ.get("WORLD_SIZE", "1")) // max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
        billed = billed_instance(recipe.hardware, on_gpu=on_gpu)  # None on a laptop CPU
        if hourly < 0:
            if billed:
                hourly, price_src = gpu_hourly_usd(budgets.reference, f"{billed[0]}:{billed[1]}",
                                                    spot=recipe.hardware.spot)
            else:
                hourly, price_src = 0.0, "local CPU"
        budget_cb = BudgetCallback(ledger, guard, hourly_usd=hourly,
                                   accelerator=billed[0] if billed else "cpu",
                                   count=billed[1] if billed else int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
                                   nodes=max(nodes, 1), spot=recipe.hardware.spot and bool(billed),
                                   cloud="skypilot" if os.environ.get("SKYPILOT_TASK_ID") else "local",
                                   max_steps=total_steps)
        if main:
            print(f"budget: training at ${hourly:.2f}/h per node ({price_src}); cap "
                  f"${guard.cap:,.2f}, spent ${ledger.spent('training'):,.4f}")
        callbacks.append(budget_cb)
    if os.environ.get("SHEAR_FAULT_KILL_AT_STEP"):
        callbacks.append(KillAtStepCallback(int(os.environ["SHEAR_FAULT_KILL_AT_STEP"])))

    resume = latest_complete(ckpt_dir)
    _dist_barrier()
    if main:
        moved = set_aside_incomplete(ckpt_dir)
        for old, new in moved:
            print(f"checkpoint: set aside incomplete {old.name} as {new.name} (killed while writing)", file=sys.stderr)
        if resume:
            print(f"checkpoint: resuming from {resume}")
    _dist_barrier()

    if use_fsdp and not on_gpu:
        _enable_fsdp_on_cpu(args)
    trainer = Trainer(model=model, args=args, train_dataset=train_ex, data_collator=collator,
                      processing_class=tok, callbacks=callbacks)
    # A run killed after its last checkpoint but before publishing the model: Trainer would
    # take one step past max_steps on resume, so the final checkpoint is published as is.
    finished = resume is not None and int(resume.name.split("-")[-1]) >= total_steps
    if finished:
        from transformers import TrainerState

        trainer.state = TrainerState.load_from_json(str(resume / "trainer_state.json"))
        if main:
            print(f"checkpoint: {resume.name} is the last step ({total_steps}); publishing it without more training")
    else:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    wrapped = sorted({type(m).__name__ for m in trainer.model_wrapped.modules() if type(m).__name__.startswith("FSDP")})
    if main:
        print(f"trained as {type(trainer.model_wrapped).__name__}; FSDP units: {wrapped or 'none'}")

    # Final model: gathered to rank 0 (FSDP full state dict, CPU offload), written to a temp dir, renamed.
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if main and tmp.exists():
        shutil.rmtree(tmp)
    _dist_barrier()
    if finished:
        if main:
            shutil.copytree(resume, tmp, ignore=shutil.ignore_patterns(
                "optimizer*", "scheduler.pt", "rng_state*", "trainer_state.json", "pytorch_model_fsdp*", ".complete*"))
    else:
        trainer.save_model(str(tmp))
    _dist_barrier()
    result: dict = {}
    if main:
        final_src = tmp
        if lora_on:
            final_src = _merge_lora(tmp, recipe, cfg, model_src, tok)
        tok.save_pretrained(final_src)
        _fix_generation_config(final_src, tok)
        publish_dir(final_src, out_dir, note=json.dumps({"recipe": recipe.name, "base": model_src}) + "\n")
        if final_src != tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        tuned_loss = None
        if held_ex:
            from transformers import AutoModelForCausalLM

            tuned = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
            tuned.config.use_cache = False
            tuned_loss = heldout_loss(tuned, held_ex, pad_collator)
        logs = trainer.state.log_history
        steps = trainer.state.global_step
        trained = int(trainer.state.num_input_tokens_seen or 0)
        procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        result = {
            # The run contract (docs/architecture.md): what was trained, where, and how much.
            # trained_tokens = non-padding tokens through forward/backward, summed over every
            # micro-batch of every optimizer step on every rank = optimizer_steps x tokens_per_step
            # (tokens_per_step is the mean: packed steps differ in length). The budget report
            # reads trained tokens from this key only.
            "model_id": cfg.model or recipe.base_model, "nodes": max(world // max(procs, 1), 1),
            "procs_per_node": procs, "epochs": cfg.num_train_epochs or recipe.num_train_epochs,
            "epochs_trained": trainer.state.epoch, "optimizer_steps": steps, "trained_tokens": trained,
            "tokens_per_step": trained / steps if steps else None,
            "recipe": recipe.name, "model": model_src, "format": recipe.format, "packing": packing, "packing_layout": layout,
            "fsdp": use_fsdp, "fsdp_units": wrapped, "lora": lora_on, "world_size": world, "max_length": max_length,
            "per_device_batch": per_device, "grad_accum": accum, "global_step": trainer.state.global_step,
            "resumed_from": str(resume) if resume else None,
            "base_heldout_loss": base_loss, "tuned_heldout_loss": tuned_loss,
            "heldout_examples": len(held_ex), "train_examples": len(train_ex),
            "masking": report.as_dict(), "heldout_masking": held_report.as_dict(),
            "loss_curve": [{"step": r["step"], "loss": r["loss"], "tokens_seen": r.get("num_input_tokens_seen")}
                           for r in logs if "loss" in r],
            "throughput": throughput.rows, "peak_flops": peak, "peak_source": peak_src,
            "non_embedding_params": n_params,
            "stopped_for_budget": bool(budget_cb and budget_cb.stopped_for_budget),
            "budget_projection": budget_cb.projection if budget_cb else None,
            "seconds": time.time() - t_start, "output_dir": str(out_dir),
        }
    if budget_cb is not None:
        budget_cb.close(trainer.state)
        if main:
            result["training_usd_spent"] = ledger.spent("training")
    if main:
        atomic_write_json(metrics_path, result)
    _dist_barrier()
    return result


def _enable_fsdp_on_cpu(args) -> None:
    """accelerate turns FSDP on only for accelerator backends (MULTI_GPU, ...), never for
    MULTI_CPU, although torch's FSDP2 runs on CPU tensors over gloo. For the CPU tests of the
    FSDP path, pre-build the shared accelerate state with the plugin Trainer would build and
    mark it FSDP (in PartialState too: every AcceleratorState() re-reads it); Trainer's
    Accelerator then reuses that state. On GPUs accelerate does all this by itself."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin, TorchDynamoPlugin

    plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
    state = AcceleratorState(cpu=True, fsdp_plugin=plugin, dynamo_plugin=TorchDynamoPlugin(),
                             _from_accelerator=True)
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin


def _merge_lora(adapter_dir: Path, recipe, cfg: TrainConfig, model_src: str, tok) -> Path:
    """Serving and judging need a plain checkpoint: merge the adapter into a fresh copy of the base."""
    import torch
    from peft import PeftModel

    from lib.train.tiny import tiny_model

    if model_src.startswith("tiny:"):
        base = tiny_model(recipe.family, tok, seed=cfg.seed, attn_implementation=recipe.attn_implementation)
    else:
        from transformers import AutoModelForCausalLM

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


def _fix_generation_config(model_dir: Path, tok) -> None:
    from transformers import GenerationConfig

    gc = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    gc.save_pretrained(model_dir)


# ---------------------------------------------------------------------------- CLI


def config_to_args(cfg: TrainConfig) -> list[str]:
    """The command-line form of a config (for torchrun workers)."""
    out = []
    for f in dataclasses.fields(TrainConfig):
        v = getattr(cfg, f.name)
        if v != f.default:
            out += [f"--{f.name.replace('_', '-')}", str(v)]
    return out


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in dataclasses.fields(TrainConfig):
        typ = {"int": int, "float": float}.get(str(f.type), str)
        p.add_argument(f"--{f.name.replace('_', '-')}", type=typ, default=f.default)
    return TrainConfig(**vars(p.parse_args(argv)))


@cli
def main(argv: list[str] | None = None) -> None:
    res = train(parse_args(argv))
    if res:
        print(json.dumps({k: res[k] for k in ("global_step", "base_heldout_loss", "tuned_heldout_loss", "output_dir")}))


if __name__ == "__main__":
    main()

"""Supervised fine-tuning, top to bottom: arguments -> data -> model -> trainer -> train -> save -> metrics.

One process (the notebook calls `train(TrainConfig(...))`):

    python -m lib.train.sft --recipe embedded --data runs/dev/data/train.jsonl \
        --heldout runs/dev/data/heldout.jsonl --output-dir runs/dev/model --run-dir runs/dev

Many processes, one node or many (FSDP; SkyPilot sets SKYPILOT_NODE_IPS / _NODE_RANK /
_NUM_GPUS_PER_NODE, and `lib.train.cluster.torchrun_command` turns them into a torchrun line):

    python -m torch.distributed.run --nproc_per_node=8 -m lib.train.sft --recipe alpaca_7b ...

Every flag is a TrainConfig field (lib/core/params.py); a bool is `--packing`, `--no-packing`
or `--packing true|false`, and a flag left out takes the recipe's value. Restarting the same
command resumes from the newest complete checkpoint in `--checkpoint-dir` (put it on a bucket
mount in the cloud). The final model is written aside and renamed into `--output-dir` with a
`.complete` marker; metrics (held-out loss of base and tuned model, loss curve, throughput,
the run contract of docs/architecture.md) go to `--metrics-path`.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from lib.budget.checkpoints import checkpoint_bytes, mtbf_seconds, preemption_rate, rate
from lib.budget.throughput import config_shape, load_table, recipe_method
from lib.core.errors import UserError, cli
from lib.core.files import atomic_write_json
from lib.core.params import parse_settings
from lib.train.callbacks import CompleteMarkerCallback, KillAtStepCallback, SaveIntervalCallback, ThroughputCallback
from lib.train.checkpoints import resume_point
from lib.train.data import read_training_records
from lib.train.dist import barrier, procs_per_node, rank_and_world
from lib.train.fsdp import enable_fsdp_on_cpu, fsdp_units, sharding_arguments
from lib.core.masking import encode_records
from lib.train.metering import budget_callback, open_budget
from lib.train.metrics import device_peak_flops, heldout_loss
from lib.train.model import load_tokenizer_and_model, make_trainable
from lib.train.packing import (MeteredCollator, TokenMeter, base_model, make_collator, prepare_for_packing,
                               supports_packing)
from lib.train.publish import publish_model
from lib.train.recipes import load_recipe
from lib.train.text import BlockStats, corpus_files, encode_corpus
from lib.train.vocab import check_extended_vocab


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
    packing: bool | None = None  # None = the recipe's; False = Alpaca-style per-batch padding
    seed: int = 42
    save_steps: int = 0  # 0 = the Young/Daly interval on spot (lib/budget/checkpoints.py), else only at the end
    spot: bool = False  # preemptible nodes (the task's use_spot): checkpoint every sqrt(2 x write s x MTBF)
    logging_steps: int = 1
    run_dir: str = ""  # when set: compute intervals go to <run_dir>/ledger, capped by budgets.yaml
    budgets_path: str = ""
    hourly_usd: float = -1.0  # per node; -1 = $0 on CPU, the catalog price on GPUs
    fsdp: bool | None = None  # None = the recipe's choice when more than one process trains
    lora: bool | None = None  # None = the recipe's adapters, if any; False = full fine-tune instead; True = insist


# 03_train's parameters that are not training settings: the notebook uses them itself.
NOTEBOOK_PARAMS = ("nproc", "heldout_fraction", "overrides", "calibrate")


def train(cfg: TrainConfig) -> dict:
    """Fine-tune as `cfg` says, resuming from the newest complete checkpoint; rank 0 returns the metrics."""
    import torch
    from transformers import Trainer, TrainerState, set_seed

    # ------------------------------------------------------------------------ arguments
    rank, world = rank_and_world()
    main, on_gpu = rank == 0, torch.cuda.is_available()
    recipe = load_recipe(cfg.recipe)
    out_dir, ckpt_dir, metrics_path = check_config(cfg, recipe)
    max_length = cfg.max_length or recipe.max_length
    epochs = cfg.num_train_epochs or recipe.num_train_epochs
    use_fsdp = (world > 1 and recipe.fsdp) if cfg.fsdp is None else cfg.fsdp
    use_lora = recipe.lora is not None and cfg.lora is not False
    grad_ckpt = recipe.gradient_checkpointing and on_gpu
    t_start = time.time()
    # Budget first: a bad budgets.yaml must fail before any compute is spent.
    budget = open_budget(cfg.run_dir, cfg.budgets_path, rank=rank, world=world)
    set_seed(cfg.seed)

    # ------------------------------------------------------------------------ data
    records = read_records(cfg, recipe)  # before the model loads: a missing or bad file fails in seconds

    # ------------------------------------------------------------------------ model
    tok, model, model_src, load = timed_load(recipe, cfg, on_gpu=on_gpu)
    check_extended_vocab(tok, model.config, recipe.new_embeddings_from)  # ids mean what the rows were resized for
    ex = encode_examples(cfg, recipe, records, tok, max_length, ckpt_dir=ckpt_dir, rank=rank)
    batch = choose_batching(model, recipe, cfg, main=main)
    pad_collator = make_collator(tok, packing=False)
    # Base model loss, before any update (and before LoRA, which starts as the identity anyway).
    base_loss = heldout_loss(model, ex.heldout, pad_collator) if (ex.heldout and main) else None
    model = make_trainable(model, recipe, lora=use_lora, gradient_checkpointing=grad_ckpt)

    # ------------------------------------------------------------------------ trainer
    total_steps = cfg.max_steps or math.ceil(math.ceil(len(ex.train) / (batch.examples_per_step * world)) * epochs)
    args = training_arguments(cfg, recipe, batch, model, output_dir=ckpt_dir, epochs=epochs, total_steps=total_steps,
                              fsdp=use_fsdp, gradient_checkpointing=grad_ckpt, on_gpu=on_gpu, world=world)
    meter = TokenMeter()
    collator = MeteredCollator(make_collator(tok, packing=batch.packing, layout=batch.layout, row_tokens=max_length),
                               meter)
    throughput = throughput_callback(meter, model, recipe, world=world, main=main, lora=use_lora,
                                     checkpointing=grad_ckpt)
    budget_cb = budget_callback(budget, recipe.hardware, hourly_usd=cfg.hourly_usd, on_gpu=on_gpu,
                                max_steps=total_steps, main=main, run_dir=cfg.run_dir) if budget else None
    callbacks = ([CompleteMarkerCallback(), throughput] + ([budget_cb] if budget_cb else []) + fault_injection()
                 + save_interval(cfg, recipe, model, total_steps, world=world, on_gpu=on_gpu, lora=use_lora, main=main))
    resume, finished = resume_point(ckpt_dir, last_step=total_steps, main=main)
    if use_fsdp and not on_gpu:
        enable_fsdp_on_cpu(args)  # accelerate has no switch for FSDP on CPU (lib/train/fsdp.py)
    trainer = Trainer(model=model, args=args, train_dataset=ex.train, data_collator=collator,
                      processing_class=tok, callbacks=callbacks)

    # ------------------------------------------------------------------------ train
    # A run killed after its last checkpoint but before publishing the model: Trainer would
    # take one step past max_steps on resume, so the final checkpoint is published as is.
    if finished:
        trainer.state = TrainerState.load_from_json(str(finished / "trainer_state.json"))
    else:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if main:
        print(f"trained as {type(trainer.model_wrapped).__name__}; "
              f"FSDP units: {fsdp_units(trainer.model_wrapped) or 'none'}")

    # ------------------------------------------------------------------------ save
    publish_model(trainer, tok, out_dir, recipe=recipe, model_src=model_src, seed=cfg.seed, lora=use_lora,
                  finished=finished, main=main)

    # ------------------------------------------------------------------------ metrics
    tuned_loss = published_heldout_loss(out_dir, ex.heldout, pad_collator) if (ex.heldout and main) else None
    seconds = time.time() - t_start
    if budget_cb is not None:
        budget_cb.close(trainer.state)  # the final gather, save and held-out loss are paid for too
    result = run_metrics(cfg, recipe, trainer, model_src=model_src, world=world, epochs=epochs, max_length=max_length,
                         batch=batch, ex=ex, fsdp=use_fsdp, lora=use_lora, resume=resume,
                         losses=(base_loss, tuned_loss), throughput=throughput, budget=budget, budget_cb=budget_cb,
                         seconds=seconds, out_dir=out_dir, load=load) if main else {}
    if main:
        atomic_write_json(metrics_path, result)
    barrier()
    return result


# What each stage of train() calls, in the same order and under the same banners.
# ---------------------------------------------------------------------------- arguments


def check_config(cfg: TrainConfig, recipe) -> tuple[Path, Path, Path]:
    """What train() needs from `cfg` beyond the recipe, checked before any work; returns where
    it writes: the model, its checkpoints and the metrics."""
    if not cfg.data:
        raise UserError("no training data: pass --data path/to/clean.jsonl")
    if not cfg.output_dir:
        raise UserError("no output directory: pass --output-dir where the fine-tuned model goes")
    if cfg.lora and recipe.lora is None:
        raise UserError(f"recipe {recipe.name} has no lora section: leave lora unset, or use a LoRA recipe")
    out_dir = Path(cfg.output_dir).resolve()
    ckpt_dir = Path(cfg.checkpoint_dir or str(out_dir) + ".checkpoints").resolve()
    return out_dir, ckpt_dir, Path(cfg.metrics_path or out_dir.parent / "train" / "metrics.json").resolve()


# ---------------------------------------------------------------------------- data


@dataclass
class Examples:
    train: list  # or a streamed dataset of blocks (continued pretraining)
    report: object  # MaskingReport, or BlockStats for raw text
    heldout: list
    heldout_report: object


def read_records(cfg: TrainConfig, recipe) -> tuple[list, list]:
    """(training, held-out) records. Continued pretraining streams its corpus while encoding:
    here its files are only found, so that a missing one fails before the model loads."""
    if recipe.format == "text":
        corpus_files(cfg.data)
        return [], []
    return read_training_records(cfg.data), (read_training_records(cfg.heldout) if cfg.heldout else [])


def encode_examples(cfg: TrainConfig, recipe, records: tuple[list, list], tok, max_length: int, *,
                    ckpt_dir: Path, rank: int) -> Examples:
    """Token ids and loss labels: masked records (lib/core/masking.py), or for format "text"
    fixed blocks of max_length tokens with no padding and every token a label (lib/train/text.py),
    cached per rank beside the checkpoints (<checkpoint_dir>.blocks/rank<N>)."""
    if recipe.format == "text":
        blocks = ckpt_dir.with_name(ckpt_dir.name + ".blocks") / f"rank{rank}"
        train_ex, report = encode_corpus(cfg.data, tok, max_length, cache_dir=blocks)
        held_ex, held_report = encode_corpus(cfg.heldout, tok, max_length) if cfg.heldout else ([], BlockStats())
    else:
        train_ex, report = encode_records(records[0], tok, fmt=recipe.format, max_length=max_length)
        held_ex, held_report = encode_records(records[1], tok, fmt=recipe.format, max_length=max_length)
    if rank == 0:
        print(report.summary())
    if not train_ex:
        raise UserError(f"no trainable samples out of {report.total} ({report.summary()}): check the data format "
                        f"({recipe.format}) and max_length={max_length}")
    return Examples(train_ex, report, held_ex, held_report)


# ---------------------------------------------------------------------------- model


@dataclass
class Batching:
    packing: bool
    layout: str  # what the collator makes: "flash", "varlen" or "rows" when packed (prepare_for_packing), or "padded"
    per_device: int  # examples per process per micro-batch
    accum: int  # micro-batches per optimizer step

    @property
    def examples_per_step(self) -> int:  # per process
        return self.per_device * self.accum


def choose_batching(model, recipe, cfg: TrainConfig, *, main: bool) -> Batching:
    """Packing as asked (or the recipe's), unless the model cannot take it; the micro-batch
    follows the layout: packed micro-batches hold more examples in the same memory."""
    packing = recipe.packing if cfg.packing is None else cfg.packing
    if packing and not supports_packing(model):
        if main:
            print(f"packing: {type(model).__name__} takes no position_ids (ALiBi/absolute positions); "
                  "using per-batch padding instead", file=sys.stderr)
        packing = False
    layout = prepare_for_packing(model) if packing else "padded"
    if not packing:
        model.config.use_cache = False
    per_device, accum = recipe.hardware.micro_batch(packing)
    return Batching(packing, layout, cfg.per_device_batch or per_device, cfg.grad_accum or accum)


# ---------------------------------------------------------------------------- trainer


def training_arguments(cfg: TrainConfig, recipe, batch: Batching, model, *, output_dir: Path, epochs: float,
                       total_steps: int, fsdp: bool, gradient_checkpointing: bool, on_gpu: bool, world: int):
    """transformers' TrainingArguments: the recipe's optimizer settings, the batching, sharding,
    and how checkpoints (cfg.save_steps, else at the end until SaveIntervalCallback sets the Young/Daly
    interval on spot: `save_interval`) and logs are written."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch.per_device,
        gradient_accumulation_steps=batch.accum,
        learning_rate=cfg.learning_rate or recipe.learning_rate,
        num_train_epochs=epochs,
        max_steps=cfg.max_steps or -1,
        lr_scheduler_type=recipe.lr_scheduler_type,
        warmup_steps=recipe.warmup_steps or recipe.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        weight_decay=recipe.weight_decay,
        bf16=bool(recipe.bf16 and on_gpu),
        **sharding_arguments(model, fsdp=fsdp, gradient_checkpointing=gradient_checkpointing, world=world,
                             on_gpu=on_gpu),
        gradient_checkpointing_kwargs={"use_reentrant": False},  # works with frozen (LoRA) inputs
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps or max(1, total_steps),
        save_total_limit=2,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        use_cpu=not on_gpu,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        # Trainer sums every micro-batch's non-padding tokens over all ranks into its state (saved
        # in each checkpoint, so a resumed run keeps counting): metrics.json's trained_tokens.
        include_num_input_tokens_seen="non_padding",
    )


def save_interval(cfg: TrainConfig, recipe, model, total_steps: int, *, world: int, on_gpu: bool, lora: bool,
                  main: bool) -> list:
    """[] when cfg.save_steps is explicit; else the callback that sets the Young/Daly save interval from C (one
    checkpoint of this model and method / the write rate the launch plan uses) and M (the spot cluster's mean
    time between preemptions, by the plan's cited rate); not on spot, the run saves only at its end."""
    if cfg.save_steps:
        return []
    table = load_table()
    accelerator = (device_peak_flops()[2] or "unknown") if on_gpu else "cpu"
    nodes = max(1, world // max(1, procs_per_node()))
    method = recipe_method(recipe if lora else replace(recipe, lora=None))  # as the launch plan counts it
    size, how = checkpoint_bytes(config_shape(model.config, "the loaded model"), method,
                                 asdict(recipe.lora) if lora else None)
    write, source = rate(table, "checkpoint_write", accelerator)
    mtbf = mtbf_seconds(preemption_rate(table)[0], nodes, cfg.spot)
    if main:
        what = (f"Young/Daly interval once the pace is measured: C = {size / 1e9:,.3f} GB [{how}] / "
                f"{write / 1e6:,.0f} MB/s = {size / write:,.1f} s, M = {mtbf / 3600:,.1f} h ({nodes} node(s))"
                if mtbf else "not on spot (spot=false): no preemptions to insure against")
        print(f"checkpoints: only at the end until set otherwise; {what}", flush=True)
    return [SaveIntervalCallback(size / write, mtbf, total_steps, source=source)] if mtbf else []


def timed_load(recipe, cfg: TrainConfig, *, on_gpu: bool):
    """(tokenizer, model, source, load): `load` = the loaded weights' parameters and bytes (in the dtype they
    train in) and the seconds the load took (download included on a fresh node): the plan's model-load line,
    calibrated by `python -m lib.launch --calibrate`."""
    t0 = time.perf_counter()
    tok, model, model_src = load_tokenizer_and_model(recipe, cfg.model, cfg.seed, on_gpu=on_gpu)
    seconds = time.perf_counter() - t0
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    return tok, model, model_src, {"params": sum(p.numel() for p in model.parameters()), "bytes": size,
                                   "seconds": seconds, "bytes_per_s": size / seconds if seconds > 0 else None}


def throughput_callback(meter: TokenMeter, model, recipe, *, world: int, main: bool, lora: bool,
                        checkpointing: bool) -> ThroughputCallback:
    """Tokens/s and MFU per logging interval: the launch plan's FLOP rule over the model's own config
    (lib/budget/throughput.py) and the device's peak from the same table."""
    peak, peak_source, accelerator = device_peak_flops() if main else (None, "", "")
    shape = config_shape(base_model(model).config, "the trained model's config")
    callback = ThroughputCallback(meter, shape=shape, method=training_method(recipe, lora=lora),
                                  checkpointing=checkpointing, peak_flops=peak, peak_source=peak_source,
                                  world_size=world)
    callback.accelerator = accelerator  # what metrics.json and --calibrate name the measurement by
    return callback


def training_method(recipe, *, lora: bool) -> str:
    """full | lora | embeddings: what trains in this run (lora=False overrides a LoRA recipe)."""
    return "embeddings" if recipe.trainable == "new_embeddings" else ("lora" if lora else "full")


def fault_injection() -> list:
    """The preemption tests' SIGKILL at a step (SHEAR_FAULT_KILL_AT_STEP), else nothing."""
    step = os.environ.get("SHEAR_FAULT_KILL_AT_STEP")
    return [KillAtStepCallback(int(step))] if step else []


# ---------------------------------------------------------------------------- metrics


def published_heldout_loss(model_dir: Path, examples: list, collator) -> float:
    """Held-out loss of the model as published (merged, reloaded from disk in fp32)."""
    import torch
    from transformers import AutoModelForCausalLM

    tuned = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tuned.config.use_cache = False
    return heldout_loss(tuned, examples, collator)


def run_metrics(cfg: TrainConfig, recipe, trainer, *, model_src: str, world: int, epochs: float, max_length: int,
                batch: Batching, ex: Examples, fsdp: bool, lora: bool, resume: Path | None,
                losses: tuple[float | None, float | None], throughput: ThroughputCallback, budget, budget_cb,
                seconds: float, out_dir: Path, load: dict | None = None) -> dict:
    """metrics.json. The run contract (docs/architecture.md): what was trained, where, and how
    much. trained_tokens = non-padding tokens through forward/backward, summed over every
    micro-batch of every optimizer step on every rank = optimizer_steps x tokens_per_step
    (tokens_per_step is the mean: packed steps differ in length). The budget report reads
    trained tokens from this key only."""
    state = trainer.state
    steps, trained, procs = state.global_step, int(state.num_input_tokens_seen or 0), procs_per_node()
    return {
        "model_id": cfg.model or recipe.base_model, "nodes": max(world // max(procs, 1), 1),
        "procs_per_node": procs, "epochs": epochs, "epochs_trained": state.epoch, "optimizer_steps": steps,
        "trained_tokens": trained, "tokens_per_step": trained / steps if steps else None,
        "recipe": recipe.name, "model": model_src, "format": recipe.format, "packing": batch.packing,
        "packing_layout": batch.layout, "fsdp": fsdp, "fsdp_units": fsdp_units(trainer.model_wrapped), "lora": lora,
        "world_size": world, "max_length": max_length, "per_device_batch": batch.per_device, "grad_accum": batch.accum,
        "global_step": state.global_step, "resumed_from": str(resume) if resume else None,
        "base_heldout_loss": losses[0], "tuned_heldout_loss": losses[1],
        "heldout_examples": len(ex.heldout), "train_examples": len(ex.train),
        "masking": ex.report.as_dict(), "heldout_masking": ex.heldout_report.as_dict(),
        "loss_curve": [{"step": r["step"], "loss": r["loss"], "tokens_seen": r.get("num_input_tokens_seen")}
                       for r in state.log_history if "loss" in r],
        "throughput": throughput.rows, "peak_flops": throughput.peak, "peak_source": throughput.peak_source,
        "params": throughput.shape.params,
        **measured_speed(throughput.rows, world, recipe, lora=lora, accelerator=throughput.accelerator),
        "checkpoint_write": throughput.checkpoint_write(), "model_load": load,
        "stopped_for_budget": bool(budget_cb and budget_cb.stopped_for_budget),
        "budget_projection": budget_cb.projection if budget_cb else None,
        "pace_projection": budget_cb.pace if budget_cb else None,
        "train_loop_seconds": budget_cb.loop_seconds if budget_cb else None,
        "seconds": seconds, "output_dir": str(out_dir),
        # what the run paid for training so far, once its final interval is recorded
        **({"training_usd_spent": budget.ledger.spent("training")} if budget_cb is not None else {}),
    }


def measured_speed(rows: list[dict], world: int, recipe, *, lora: bool, accelerator: str) -> dict:
    """What `python -m lib.launch --calibrate` reads back: real tokens/s per process and MFU, time-weighted
    over the logged intervals, and the accelerator (the device's name in the peaks' vocabulary) and
    method they were measured on."""
    secs = sum(r.get("seconds") or 0.0 for r in rows)
    tps = sum((r.get("useful_tokens_per_s") or 0.0) * (r.get("seconds") or 0.0) for r in rows) / secs / world \
        if secs and world else None
    mfus = [(r["mfu"], r["seconds"]) for r in rows if r.get("mfu") is not None and r.get("seconds")]
    mfu = sum(m * t for m, t in mfus) / sum(t for _, t in mfus) if mfus else None
    method = training_method(recipe, lora=lora)
    return {"tokens_per_s_per_gpu": tps, "mfu": mfu, "accelerator": accelerator, "method": method,
            "measured_at": time.strftime("%Y-%m-%d", time.gmtime())}


# ---------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """A TrainConfig from the command line (one flag per field; a mistake is one error line)."""
    return parse_settings(TrainConfig, argv, __doc__.split("\n")[0])


@cli
def main(argv: list[str] | None = None) -> None:
    res = train(parse_args(argv))
    if res:
        print(json.dumps({k: res[k] for k in ("global_step", "base_heldout_loss", "tuned_heldout_loss", "output_dir")}))


if __name__ == "__main__":
    main()

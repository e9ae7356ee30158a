"""The launch plan of a training task: what it will train, for how long, for how much.

`python -m lib.launch sky/<task>.yaml --dry-run` builds one before any money is spent, prints
it with every formula input, and saves it as `<run_dir>/plan/<task>.json`; after the run the
budget report puts it beside what was measured (lib/budget/report.py).

    data      examples and tokens of clean.jsonl, minus 03_train's held-out slice, each example
              cut at the recipe's max_length as training cuts it; tokenized with the recipe's
              tokenizer when it is on this machine, else the printed estimate rule
    steps     ceil(train examples / (per-device batch x grad accum x GPUs x nodes)) x epochs
    tokens    trained (real) = train tokens x epochs; processed = what the GPUs compute: the
              same when packed, else the collator's padded total for this batch size and the
              trainer's sample order (accelerate's seedable sampler: randperm seeded seed + epoch)
    speed     tokens/s/GPU = utilization x peak / FLOPs per token (lib/budget/throughput.py: the
              base model's shape, the method, the real attention span; a cited prior or a
              measured row of lib/data/throughput.yaml, printed), low / expected / high
    hours     processed tokens / (tokens/s/GPU x GPUs x nodes) / 3600 + overheads, each a line of its
              own from a measured or cited rate (lib/launch/overheads.py: provisioning, model download
              + load, checkpoint writes, held-out loss, spot preemptions)
    dollars   hours x node price (SkyPilot catalog) x nodes   (lib/launch/estimate.py)

The recipe is the one the task's profile names (lib/launch/task_profile.py), and the task's
GPUs must be the ones the recipe's batch layout is written for. Without a clean.jsonl (no
--data, no synced --run-dir) the task's TRAIN_TOKENS env stands in for the data (less the
held-out slice), labelled as an assumption; steps then cannot be counted and say so.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from lib.budget.plans import plan_path
from lib.budget.throughput import load_table, model_shape, recipe_method, speed
from lib.core.errors import UserError
from lib.core.files import atomic_write_json
from lib.core.formats import alpaca_prompt
from lib.core.masking import encode_records, ensure_pad_token
from lib.core.model import checked_tokenizer, resolve_model
from lib.launch.overheads import Overhead, RunShape, overheads
from lib.train.data import read_training_records, split_heldout
from lib.train.recipes import DPO_HELDOUT_FRACTION as DPO_HELDOUT
from lib.train.recipes import Recipe, load_recipe
from lib.train.text import document_ids

HELDOUT_FRACTION = 0.1  # 03_train's default heldout_fraction (the slice never trained on)
SEED = 42  # 03_train's default seed: the held-out cut and the sample order
BYTES_PER_TOKEN = 4  # the estimate rule when no tokenizer is at hand (English-like text)
LEVELS = ("low", "expected", "high")


@dataclass
class DataCount:
    path: str
    records: int
    heldout: int
    examples: int  # trainable examples (what one epoch feeds)
    tokens: int  # tokens of those examples, one epoch
    method: str  # "tokenizer <name>" or the estimate rule
    exact: bool
    lengths: list = field(default_factory=list, repr=False)  # tokens of each example (not saved)


@dataclass
class Plan:
    task: str
    recipe: str
    base_model: str
    hyperparameters: dict
    accelerator: str
    nodes: int
    gpus_per_node: int
    epochs: float
    per_device_batch: int
    grad_accum: int
    data: DataCount | None
    tokens_per_epoch: float
    tokens_source: str
    steps_per_epoch: int | None
    optimizer_steps: int | None
    trained_tokens: float  # real tokens through forward + backward (the trainer's non-padding count)
    processed_tokens: float  # positions the GPUs compute, padding included
    processed_source: str
    method: str  # full | lora | embeddings
    attn_span: float  # positions a processed token attends to, on average
    flops_per_token: dict  # model / hardware FLOPs per processed token, formula
    tokens_per_s_per_gpu: float  # real tokens, expected
    tokens_per_s_interval: dict  # real tokens/s/GPU low / expected / high
    utilization: dict  # HFU low / expected / high
    mfu: float  # expected
    peak_flops: float
    peak_source: str
    throughput_source: str  # the prior or measured row used
    compute_hours: float  # expected
    compute_hours_interval: dict  # low (fast) / expected / high (slow)
    overhead_hours: float = 0.0  # the sum of `overheads`
    overheads: list = field(default_factory=list)  # lib/launch/overheads.py lines: name, hours, formula, source
    max_steps: int = 0  # 03_train's max_steps when it cuts the run short (0 = the recipe's epochs)
    spot: bool = False
    created: float = 0.0
    # filled in by the launcher once the task is priced
    hours: float = 0.0
    hourly_usd: float = 0.0
    usd: float = 0.0
    usd_interval: dict = field(default_factory=dict)
    price_source: str = ""
    spent_usd: float = 0.0
    remaining_usd: float = 0.0
    lines: list = field(default_factory=list)

    @property
    def gpus(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def effective_batch(self) -> int:
        return self.per_device_batch * self.grad_accum * self.gpus


# ---------------------------------------------------------------------------- data


def local_tokenizer(name: str):
    """The tokenizer `name` if it is on this machine (cache or directory), else None: a plan
    never downloads weights or tokenizers. A directory whose tokenizer files are broken is one
    line (`checked_tokenizer`), not an estimate."""
    try:
        src = resolve_model(name)
    except UserError:  # the embedded model's package is not installed
        return None
    try:
        tok = checked_tokenizer(src, "pass --tokenizer DIR with a checkpoint's tokenizer files", local_files_only=True)
    except (OSError, ValueError):
        return None
    ensure_pad_token(tok)
    return tok


def _text_bytes(obj) -> int:
    if isinstance(obj, str):
        return len(obj.encode("utf-8"))
    if isinstance(obj, dict):
        return sum(_text_bytes(v) for k, v in obj.items() if k != "id")
    if isinstance(obj, list):
        return sum(_text_bytes(v) for v in obj)
    return 0


def count_data(path: str | os.PathLike, recipe, tokenizer: str | None = None, *,
               heldout_fraction: float = HELDOUT_FRACTION, seed: int = 42) -> DataCount:
    """Examples and tokens of one epoch of `path` as 03_train would train them."""
    records = read_training_records(path)
    train, held = split_heldout(records, heldout_fraction, seed=seed)
    name = tokenizer or recipe.base_model
    tok = local_tokenizer(name)
    if recipe.format == "text":  # continued pretraining: every token of fixed blocks trains
        return _count_text(path, records, train, held, recipe, tok, name)
    if tok is not None:
        examples, report = encode_records(train, tok, fmt=recipe.format, max_length=recipe.max_length)
        dropped = f", {len(train) - len(examples):,} dropped as training drops them" if len(examples) < len(train) else ""
        return DataCount(str(path), len(records), len(held), len(examples), report.tokens,
                         f"tokenizer {name} ({recipe.format} format, cut at {recipe.max_length}{dropped})", True,
                         [len(e["input_ids"]) for e in examples])
    if recipe.format == "alpaca":  # the prompt template is part of what trains: count its text too
        def text(r):
            return alpaca_prompt(str(r.get("instruction", "")), str(r.get("input", "") or "")) + str(r.get("output", ""))
        what = "Alpaca prompt + output"
    else:
        text, what = (lambda r: r), "every text field"
    lengths = [min(math.ceil(_text_bytes(text(r)) / BYTES_PER_TOKEN), recipe.max_length) for r in train]
    return DataCount(str(path), len(records), len(held), len(train), sum(lengths),
                     f"ESTIMATE: no tokenizer of {name} on this machine; UTF-8 bytes of each record's {what} / "
                     f"{BYTES_PER_TOKEN}, cut at {recipe.max_length} (pass --tokenizer DIR for an exact count)", False,
                     lengths)


def _count_text(path, records, train, held, recipe, tok, name) -> DataCount:
    """Blocks of max_length tokens, as lib.train.text cuts them (the tail shorter than a block drops)."""
    block = recipe.max_length
    if tok is not None:
        tokens = sum(len(document_ids(str(r.get("text", "")), tok)) for r in train if str(r.get("text", "")).strip())
        how, exact = f"tokenizer {name} (text format: documents + BOS/EOS in blocks of {block})", True
    else:
        tokens = sum(math.ceil(_text_bytes(r.get("text", "")) / BYTES_PER_TOKEN) for r in train)
        how, exact = (f"ESTIMATE: no tokenizer of {name} on this machine; UTF-8 bytes of each document / "
                      f"{BYTES_PER_TOKEN}, in blocks of {block} (pass --tokenizer DIR for an exact count)"), False
    blocks = tokens // block
    return DataCount(str(path), len(records), len(held), blocks, blocks * block, how, exact, [block] * blocks)


def check_text_file(path: Path, what: str) -> None:
    """One line for data that cannot be a JSONL of records: empty, or binary (NUL bytes, not UTF-8)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if not head.strip():
        raise UserError(f"{what} is empty: pass a clean.jsonl with one record per line (02_clean writes one)")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        binary = e.start < len(head) - 4  # a multi-byte character cut by the 64 KiB read is not binary
    else:
        binary = False
    if binary or b"\0" in head:
        raise UserError(f"{what} is binary, not JSON lines: pass a clean.jsonl (UTF-8 text, one record per line)")


def find_data(data: str | None, run_dir: str | None) -> Path | None:
    """clean.jsonl from --data, else <run_dir>/data/clean.jsonl when the run directory has one;
    read now, before any price is looked up: binary or empty data is one line, not a traceback
    or a priced run of zero steps."""
    p = None
    if data:
        p = Path(data)
        if p.is_dir():
            p = p / "data" / "clean.jsonl" if (p / "data").is_dir() else p / "clean.jsonl"
        if not p.is_file():
            raise UserError(f"--data {data}: no such file: pass a clean.jsonl or a run directory holding data/clean.jsonl")
    elif run_dir and (Path(run_dir) / "data" / "clean.jsonl").is_file():
        p = Path(run_dir) / "data" / "clean.jsonl"
    if p is not None:
        check_text_file(p, f"--data {data}" if data else str(p))
    return p


# ---------------------------------------------------------------------------- plan


def check_layout(task_name: str, recipe: Recipe, gpus_per_node: int, nodes: int) -> None:
    """The task's GPUs are those the recipe's batch layout is written for: per-device batch x
    accumulation x GPUs is the seed's effective batch only on that many GPUs."""
    if gpus_per_node < 1:
        raise UserError(f"{task_name}: a training task must request GPUs (resources.accelerators) to be planned")
    h = recipe.hardware
    if gpus_per_node * nodes != h.processes:
        raise UserError(f"{task_name} runs {nodes} node(s) x {gpus_per_node} GPUs but recipe {recipe.name} is laid out "
                        f"for {h.nodes} x {h.gpus_per_node} (batch {recipe.effective_batch}): set resources.accelerators "
                        f"to {h.accelerator}:{h.gpus_per_node} and num_nodes to {h.nodes}, or write a recipe for "
                        "these GPUs")


def padded_tokens(lengths: list[int], per_device: int, epochs: float, seed: int = SEED) -> tuple[float, float]:
    """(positions, sum of batch x width^2) the padding collator builds over `epochs`: micro-batches of
    `per_device` examples in the trainer's order (accelerate's seedable sampler: torch.randperm
    seeded `seed + epoch`), each padded to its longest example (DataCollatorForSeq2Seq, "longest")."""
    import torch

    positions = squares = 0.0
    n = len(lengths)
    for epoch in range(math.ceil(epochs)):
        g = torch.Generator()
        g.manual_seed(seed + epoch)
        order = torch.randperm(n, generator=g).tolist()
        share = min(1.0, epochs - epoch)  # a fractional last epoch: its share of the micro-batches
        for i in range(0, n, per_device):
            width = max(lengths[j] for j in order[i:i + per_device])
            rows = len(order[i:i + per_device])
            positions += share * rows * width
            squares += share * rows * width * width
    return positions, squares


def _tokens(recipe: Recipe, data: Path | None, tokenizer: str | None, tokens_override: float | None, task_name: str):
    """(DataCount or None, tokens per epoch, their source, lengths): counted from clean.jsonl, else the task's env.
    DPO trains on pairs that do not exist before its task runs (08_prefer builds them): the task's env, less
    the share 08_prefer holds out."""
    if recipe.dpo is not None and tokens_override:
        tokens = float(tokens_override) * (1 - DPO_HELDOUT)
        return None, tokens, (f"ASSUMED: the task's TRAIN_TOKENS env {tokens_override:,.0f} pair tokens less the "
                              f"{DPO_HELDOUT:g} of pairs 08_prefer holds out (the pairs are built by the task itself)"), None
    if data is not None:
        count = count_data(data, recipe, tokenizer)
        return count, float(count.tokens), f"{count.method}; {count.path}", count.lengths
    if tokens_override:
        if recipe.format == "text":  # a stated corpus size is a number of blocks
            blocks = int(tokens_override * (1 - HELDOUT_FRACTION)) // recipe.max_length
            return None, float(blocks * recipe.max_length), (
                f"ASSUMED: the task's TRAIN_TOKENS env {tokens_override:,.0f} less the {HELDOUT_FRACTION:g} held out "
                "(no corpus given: pass --data PATH to count it)"), [recipe.max_length] * blocks
        tokens = float(tokens_override) * (1 - HELDOUT_FRACTION)
        return None, tokens, (f"ASSUMED: the task's TRAIN_TOKENS env {tokens_override:,.0f} less the "
                              f"{HELDOUT_FRACTION:g} 03_train holds out (no clean.jsonl given: pass --data PATH or a "
                              "--run-dir holding data/clean.jsonl to count the real data)"), None
    raise UserError(f"{task_name}: no data to plan from: pass --data path/to/clean.jsonl or --run-dir RUN "
                    "(with data/clean.jsonl), or set env TRAIN_TOKENS")


def first_steps_tokens(lengths: list[int], per_step: int, steps: int, seed: int = SEED) -> float:
    """Real tokens of the first `steps` optimizer steps of `per_step` examples each, in the trainer's sample
    order (randperm seeded seed + epoch, epochs repeating); an epoch's last step takes what is left."""
    import torch

    total, done, epoch, n = 0.0, 0, 0, len(lengths)
    while n and done < steps:
        g = torch.Generator()
        g.manual_seed(seed + epoch)
        order = torch.randperm(n, generator=g).tolist()
        for i in range(0, n, per_step):
            if done == steps:
                break
            total += sum(lengths[j] for j in order[i:i + per_step])
            done += 1
        epoch += 1
    return total


def _processed(recipe: Recipe, lengths: list[int] | None, per_device: int, epochs: float, trained: float):
    """(processed tokens, attention span, how): what the GPUs compute, padding included."""
    if lengths is None:  # a stated token count: no lengths to lay out
        how = "ASSUMED: every token attends to max_length positions (no lengths without data; an upper bound)"
        if not recipe.packing:
            return trained * 2, float(recipe.max_length), (
                "ASSUMED: padding doubles the positions (no lengths without data; Alpaca-length data pads 1.6-2.4x)")
        return trained, float(recipe.max_length), how
    if not lengths:
        return 0.0, 0.0, "no examples"
    if recipe.packing:
        span = sum(n * n for n in lengths) / sum(lengths)
        return trained, span, ("packed, padding-free: processed = trained; attention span = sum of squared "
                               f"example lengths / tokens = {span:,.1f}")
    positions, squares = padded_tokens(lengths, per_device, epochs)
    return positions, squares / positions, (
        f"padded per micro-batch of {per_device} to its longest example (DataCollatorForSeq2Seq), in the trainer's "
        f"sample order (randperm seeded {SEED} + epoch): {positions / max(trained, 1):.2f}x the real tokens")


def _shape(base_model: str, recipe: Recipe):
    """The shape of what 03_train will load; an override not on this machine (a resized checkpoint on the
    bucket) is priced with the recipe's base model's shape, and the plan says so."""
    try:
        return model_shape(base_model), ""
    except UserError:
        if base_model == recipe.base_model:
            raise
        return model_shape(recipe.base_model), (f" | shape: {recipe.base_model}'s ({base_model} is not on this "
                                                "machine; an extended vocabulary adds little)")


def make_plan(task_name: str, recipe_name: str, *, base_model: str = "", accelerator: str, gpus_per_node: int,
              nodes: int, data: Path | None, tokenizer: str | None = None, tokens_override: float | None = None,
              tps_override: float | None = None, provisioning_hours: float | None = None,
              packing: bool | None = None, spot: bool = False, max_steps: int = 0,
              settings: dict | None = None, save_steps: int = 0, extra: list[Overhead] | None = None) -> Plan:
    """`base_model`: what 03_train will load when not the recipe's (an override such as $BASE_MODEL);
    `packing`: the profile's 03_train.packing when it sets one (False = Alpaca's per-batch padding);
    `spot`: price preemptions; `provisioning_hours`: the task's OVERHEAD_HOURS env; `max_steps`:
    03_train's max_steps (the first max_steps optimizer steps, in the trainer's sample order); `settings`:
    03_train's overrides of the recipe (`with_settings`); `save_steps`: 03_train's explicit save_steps
    (0 = its Young/Daly interval, lib/budget/checkpoints.py); `extra`: the task's own overhead lines (DPO's
    sampling on node 0)."""
    recipe = with_settings(load_recipe(recipe_name), settings or {})
    if packing is not None and packing != recipe.packing:
        recipe = replace(recipe, packing=bool(packing))
    base_model = base_model or recipe.base_model
    check_layout(task_name, recipe, gpus_per_node, nodes)
    per_device, accum = recipe.hardware.micro_batch(recipe.packing)
    epochs = float(recipe.num_train_epochs)
    gpus = gpus_per_node * nodes
    count, tokens, source, lengths = _tokens(recipe, data, tokenizer or base_model, tokens_override, task_name)
    steps_per_epoch = optimizer_steps = None
    examples = count.examples if count is not None else (len(lengths) if lengths is not None else None)
    if examples is not None:
        steps_per_epoch = math.ceil(examples / (per_device * accum * gpus))  # as lib.train.sft counts them
        optimizer_steps = math.ceil(steps_per_epoch * epochs)
    trained = tokens * epochs
    processed, span, processed_how = _processed(recipe, lengths, per_device, epochs, trained)
    if max_steps and lengths:  # a run cut short: the tokens of its first max_steps steps
        cut = first_steps_tokens(lengths, per_device * accum * gpus, max_steps)
        processed, trained, optimizer_steps = processed * cut / trained if trained else 0.0, cut, max_steps
    method = recipe_method(recipe)
    lm_head = bool(recipe.lora and "lm_head" in (recipe.lora.modules_to_save or []))
    shape, shape_note = _shape(base_model, recipe)
    # DPO: a trained token is a pair token (the prompt counted in both sequences); the frozen reference
    # model adds one forward per token every epoch, or once in all when its log-probs are stored
    ref = 0.0 if recipe.dpo is None else (1.0 / epochs if recipe.dpo.precompute_ref_log_probs else 1.0)
    sp = speed(shape, recipe=recipe.name, method=method, accelerator=accelerator, seq_len=span,
               max_length=recipe.max_length, checkpointing=recipe.gradient_checkpointing, lm_head_trains=lm_head,
               reference_forwards=ref, model=base_model)
    ratio = trained / processed if processed else 1.0  # real tokens per processed position
    tps = {k: v * ratio for k, v in sp.tokens_per_s_per_gpu.items()}
    row = sp.row + shape_note
    if tps_override is not None:
        if tps_override <= 0:
            raise UserError(f"TOKENS_PER_S_PER_GPU={tps_override:g} must be > 0: pass e.g. --env TOKENS_PER_S_PER_GPU=4000")
        tps = {k: float(tps_override) for k in LEVELS}
        row = f"env TOKENS_PER_S_PER_GPU={tps_override:g} (overrides lib/data/throughput.yaml)"
    hours = {k: trained / (tps[k] * gpus) / 3600.0 if trained else 0.0 for k in LEVELS}
    hours = {"low": hours["high"], "expected": hours["expected"], "high": hours["low"]}  # fast speed = few hours
    hyper = {k: getattr(recipe, k) for k in ("format", "max_length", "packing", "effective_batch", "num_train_epochs",
                                             "learning_rate", "lr_scheduler_type", "warmup_ratio", "weight_decay",
                                             "bf16", "fsdp", "gradient_checkpointing", "attn_implementation")}
    hyper["lora"] = asdict(recipe.lora) if recipe.lora is not None else None
    hyper["dpo"] = asdict(recipe.dpo) if recipe.dpo is not None else None
    plan = Plan(task=task_name, recipe=recipe.name, base_model=base_model, hyperparameters=hyper,
                accelerator=accelerator, nodes=nodes, gpus_per_node=gpus_per_node, epochs=epochs,
                per_device_batch=per_device, grad_accum=accum, data=count, tokens_per_epoch=tokens,
                tokens_source=source, steps_per_epoch=steps_per_epoch, optimizer_steps=optimizer_steps,
                trained_tokens=trained, processed_tokens=processed, processed_source=processed_how, method=method,
                attn_span=span, flops_per_token={"model": sp.flops.model, "hardware": sp.flops.hardware,
                                                 "formula": sp.flops.formula},
                tokens_per_s_per_gpu=tps["expected"], tokens_per_s_interval=tps, utilization=sp.utilization,
                mfu=tps["expected"] * sp.flops.model / sp.peak_flops,  # real tokens only: padding lowers it
                peak_flops=sp.peak_flops, peak_source=sp.peak_source, throughput_source=row,
                compute_hours=hours["expected"], compute_hours_interval=hours, max_steps=max_steps, spot=spot,
                created=time.time())
    return with_overheads(plan, shape, recipe, provisioning_hours=provisioning_hours, save_steps=save_steps,
                          extra=extra)


def with_settings(recipe: Recipe, settings: dict) -> Recipe:
    """The recipe as 03_train runs it with its notebook's max_length, num_train_epochs, per_device_batch and
    grad_accum (0 or absent = the recipe's), as lib.train.sft applies them."""
    top = {k: settings[k] for k in ("max_length", "num_train_epochs") if settings.get(k)}
    pd, ga, h = settings.get("per_device_batch") or 0, settings.get("grad_accum") or 0, recipe.hardware
    padded = h.micro_batch(False)  # an override replaces the value of both layouts, as lib.train.sft does
    hw = replace(h, per_device_batch=pd or h.per_device_batch, grad_accum=ga or h.grad_accum,
                 padded_per_device_batch=pd or padded[0], padded_grad_accum=ga or padded[1])
    return replace(recipe, **top, hardware=hw)


def with_overheads(plan: Plan, shape, recipe: Recipe, *, provisioning_hours: float | None,
                   save_steps: int = 0, extra: list[Overhead] | None = None) -> Plan:
    """The plan with its overhead lines (lib/launch/overheads.py) and their sum."""
    f = plan.flops_per_token
    held = HELDOUT_FRACTION if recipe.dpo is None else DPO_HELDOUT
    forward = 2.0 * shape.matmul_params + 4.0 * shape.layers * shape.hidden * plan.attn_span
    run = RunShape(shape=shape, method=plan.method, lora=plan.hyperparameters["lora"], accelerator=plan.accelerator,
                   nodes=plan.nodes, on_gpu_bf16_base=plan.accelerator != "cpu" and recipe.bf16 and recipe.lora is not None,
                   compute_hours=plan.compute_hours, steps=plan.optimizer_steps,
                   heldout_tokens=plan.tokens_per_epoch * held / (1 - held),
                   forward_share=min(forward / f["hardware"], 1.0) if f["hardware"] else 0.0,
                   tokens_per_s=plan.tokens_per_s_per_gpu * plan.gpus, save_steps=save_steps,
                   dpo=recipe.dpo is not None)
    lines = overheads(run, load_table(), spot=plan.spot, provisioning_hours=provisioning_hours) + list(extra or [])
    plan.overheads = [o.as_dict() for o in lines]
    plan.overhead_hours = sum(o.hours for o in lines)
    return plan


def describe_plan(p: Plan) -> list[str]:
    """The plan's lines, each with the inputs of its formula (hand-checkable)."""
    h = p.hyperparameters
    lines = [f"model:     {p.base_model} (recipe {p.recipe}; format {h['format']}, max_length {h['max_length']}, "
             f"lr {h['learning_rate']:g} {h['lr_scheduler_type']}, warmup {h['warmup_ratio']:g}, "
             f"weight decay {h['weight_decay']:g}, packing {h['packing']}, fsdp {h['fsdp']}, "
             f"lora {'r=' + str(h['lora']['r']) if h['lora'] else 'no'})",
             (f"compute:   {p.nodes} node(s) x {p.gpus_per_node} {p.accelerator} = {p.gpus} GPUs" if p.accelerator != "cpu"
              else f"compute:   {p.gpus} CPU process on this machine")]
    lines += _data_lines(p)
    if h.get("dpo"):
        d = h["dpo"]
        lines.append(f"dpo:       beta {d['beta']:g}; a token is a pair token (prompt + chosen, prompt + rejected); the "
                     f"frozen reference's forward is in the FLOPs below, "
                     f"{'once (log-probs stored)' if d['precompute_ref_log_probs'] else 'every epoch'}")
    if p.max_steps:
        lines.append(f"tokens:    the first {p.max_steps} steps (max_steps) of {p.tokens_per_epoch:,.0f} per epoch, in the "
                     f"trainer's sample order = {p.trained_tokens:,.0f} trained tokens; {p.processed_tokens:,.0f} "
                     f"processed [{p.processed_source}]")
    else:
        lines.append(f"tokens:    {p.tokens_per_epoch:,.0f} x {p.epochs:g} epochs = {p.trained_tokens:,.0f} trained "
                     f"tokens; {p.processed_tokens:,.0f} processed [{p.processed_source}]")
    f = p.flops_per_token
    lines.append(f"flops:     {p.method}: {f['formula']} = {f['model']:.4g} model / {f['hardware']:.4g} hardware FLOPs "
                 f"per processed token (attention span {p.attn_span:,.1f})")
    lines.append(f"peak:      {p.peak_flops / 1e12:g} TFLOP/s {'dense bf16' if p.accelerator != 'cpu' else 'fp32'} "
                 f"[{p.peak_source}]")
    t, u = p.tokens_per_s_interval, p.utilization
    lines.append(f"speed:     {t['low']:,.0f} / {t['expected']:,.0f} / {t['high']:,.0f} tokens/s/GPU (low / expected / "
                 f"high) = HFU {u['low']:.2f} / {u['expected']:.2f} / {u['high']:.2f} x peak / hardware FLOPs per token"
                 f" x real/processed; expected MFU {p.mfu:.2f}")
    lines.append(f"sources:   {p.throughput_source}")
    c = p.compute_hours_interval
    lines.append(f"training:  {p.trained_tokens:,.0f} trained tokens / ({p.tokens_per_s_per_gpu:,.1f} tokens/s/GPU x "
                 f"{p.gpus} GPUs) = {p.compute_hours * 3600:,.0f} s ({c['low'] * 3600:,.0f}-{c['high'] * 3600:,.0f})")
    lines += [Overhead(**o).line() for o in p.overheads]
    lines.append(f"total:     {p.overhead_hours:.3f} h of overheads; wall time {p.compute_hours + p.overhead_hours:.3f} h "
                 f"= {(p.compute_hours + p.overhead_hours) * 3600:,.0f} s (low {(c['low'] + p.overhead_hours) * 3600:,.0f}"
                 f" / high {(c['high'] + p.overhead_hours) * 3600:,.0f})")
    return lines


def _data_lines(p: Plan) -> list[str]:
    h = p.hyperparameters
    if p.data is not None:
        d = p.data
        return [f"data:      {d.records:,} records - {d.heldout:,} held out ({HELDOUT_FRACTION:g}, as 03_train) = "
                f"{d.examples:,} examples, {d.tokens:,} tokens per epoch [{p.tokens_source}]",
                f"steps:     ceil({d.examples:,} examples / ({p.per_device_batch} per device x {p.grad_accum} accum "
                f"x {p.gpus} GPUs = {p.effective_batch})) = {p.steps_per_epoch:,} per epoch "
                + (f"x {p.epochs:g} epochs = {p.optimizer_steps:,} optimizer steps" if not p.max_steps
                   else f"; 03_train's max_steps: {p.optimizer_steps:,} optimizer steps")]
    if p.steps_per_epoch is not None:  # text format: blocks follow from the stated token count
        blocks = int(p.tokens_per_epoch) // h["max_length"]
        return [f"data:      {p.tokens_per_epoch:,.0f} tokens per epoch = {blocks:,} blocks of {h['max_length']} "
                f"[{p.tokens_source}]",
                f"steps:     ceil({blocks:,} blocks / ({p.per_device_batch} per device x {p.grad_accum} accum "
                f"x {p.gpus} GPUs = {p.effective_batch})) = {p.steps_per_epoch:,} per epoch x {p.epochs:g} epochs "
                f"= {p.optimizer_steps:,} optimizer steps"]
    return [f"data:      {p.tokens_per_epoch:,.0f} tokens per epoch [{p.tokens_source}]",
            f"steps:     unknown until {'the pairs exist' if p.hyperparameters.get('dpo') else 'clean.jsonl is counted'} (batch {p.per_device_batch} per device x "
            f"{p.grad_accum} accum x {p.gpus} GPUs = {p.effective_batch} examples per step)"]


def save_plan(run_dir: str | os.PathLike, plan: Plan) -> Path:
    path = plan_path(run_dir, plan.task)
    out = asdict(plan)
    if out.get("data"):
        out["data"].pop("lengths", None)  # one number per example: the counts above say what they sum to
    atomic_write_json(path, out)
    return path


LOCAL_TASK = "local"  # the plan of a run trained here: <run_dir>/plan/local.json


def plan_local_run(run_dir: str | os.PathLike, recipe_name: str, *, model: str = "", max_steps: int = 0,
                   packing: bool | None = None, settings: dict | None = None, save_steps: int = 0) -> Plan | None:
    """The plan of a laptop recipe's 03_train on this machine (one CPU process), from the run's own
    data/clean.jsonl, saved as <run_dir>/plan/local.json before training, so that the budget report
    sets it beside what the run measured. None (nothing saved) for a GPU recipe, whose plan is the
    launcher's, or a tiny random model, which has no shape to plan."""
    recipe = load_recipe(recipe_name)
    if recipe.is_full_size or model == "tiny":
        return None
    plan = make_plan(LOCAL_TASK, recipe_name, base_model=model, accelerator="cpu", gpus_per_node=1, nodes=1,
                     data=find_data(None, str(run_dir)), max_steps=max_steps, packing=packing, settings=settings,
                     save_steps=save_steps)
    plan.hours = plan.compute_hours + plan.overhead_hours
    plan.usd_interval = {k: 0.0 for k in LEVELS}
    plan.price_source = "local CPU costs $0"
    plan.lines = describe_plan(plan)
    save_plan(run_dir, plan)
    return plan

"""The launch plan of a training task: what it will train, for how long, for how much.

`python -m lib.launch sky/<task>.yaml --dry-run` builds one before any money is spent, prints
it with every formula input, and saves it as `<run_dir>/plan/<task>.json`; after the run the
budget report puts it beside what was measured (lib/budget/report.py).

    data      examples and tokens of clean.jsonl, minus 03_train's held-out slice, each example
              cut at the recipe's max_length as training cuts it; tokenized with the recipe's
              tokenizer when it is on this machine, else the printed estimate rule
    steps     ceil(train examples / (per-device batch x grad accum x GPUs x nodes)) x epochs
    tokens    train tokens x epochs
    hours     tokens / (tokens/s/GPU x GPUs x nodes) / 3600 + overhead
              tokens/s/GPU from lib/data/throughput.yaml (its row's source is printed)
    dollars   hours x node price (SkyPilot catalog) x nodes   (lib/launch/estimate.py)

The recipe is the one the task's profile names (lib/launch/task_profile.py), and the task's
GPUs must be the ones the recipe's batch layout is written for. Without a clean.jsonl (no
--data, no synced --run-dir) the task's TRAIN_TOKENS env stands in for the data, labelled as
an assumption; steps then cannot be counted and say so.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from lib.budget.plans import plan_path
from lib.core.errors import UserError
from lib.core.files import atomic_write_json
from lib.core.formats import alpaca_prompt
from lib.core.masking import encode_records, ensure_pad_token
from lib.core.model import checked_tokenizer, resolve_model
from lib.core.paths import LIB
from lib.train.data import read_training_records, split_heldout
from lib.train.recipes import Recipe, load_recipe
from lib.train.text import document_ids

THROUGHPUT_YAML = LIB / "data" / "throughput.yaml"
HELDOUT_FRACTION = 0.1  # 03_train's default heldout_fraction (the slice never trained on)
BYTES_PER_TOKEN = 4  # the estimate rule when no tokenizer is at hand (English-like text)
OVERHEAD_HOURS = 0.3  # provisioning + setup + final save, assumed; a task's OVERHEAD_HOURS env replaces it


@dataclass
class DataCount:
    path: str
    records: int
    heldout: int
    examples: int  # trainable examples (what one epoch feeds)
    tokens: int  # tokens of those examples, one epoch
    method: str  # "tokenizer <name>" or the estimate rule
    exact: bool


@dataclass
class Throughput:
    tokens_per_s_per_gpu: float
    source: str


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
    trained_tokens: float
    tokens_per_s_per_gpu: float
    throughput_source: str
    compute_hours: float
    overhead_hours: float
    created: float = 0.0
    # filled in by the launcher once the task is priced
    hours: float = 0.0
    hourly_usd: float = 0.0
    usd: float = 0.0
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


# ---------------------------------------------------------------------------- throughput


def throughput(recipe: str, accelerator: str, override: float | None = None,
               table: str | os.PathLike = THROUGHPUT_YAML) -> Throughput:
    """tokens/s/GPU for `recipe` on `accelerator`: an explicit override, else the table's row."""
    if override is not None:
        if override <= 0:
            raise UserError(f"TOKENS_PER_S_PER_GPU={override:g} must be > 0: pass e.g. --env TOKENS_PER_S_PER_GPU=1500")
        return Throughput(override, f"env TOKENS_PER_S_PER_GPU={override:g} (overrides {Path(table).name})")
    rows = (yaml.safe_load(Path(table).read_text()) or {}).get("rows") or []
    for row in rows:
        if row.get("recipe") == recipe and row.get("accelerator") == accelerator:
            return Throughput(float(row["tokens_per_s_per_gpu"]), f"{Path(table).name}: {row['source']}")
    raise UserError(f"no throughput row for recipe {recipe} on {accelerator} in {table}: add one (measure it with "
                    "bench/bench_train_gpu.py) or pass --env TOKENS_PER_S_PER_GPU=N")


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
        return DataCount(str(path), len(records), len(held), len(examples), report.tokens,
                         f"tokenizer {name} ({recipe.format} format, cut at {recipe.max_length})", True)
    if recipe.format == "alpaca":  # the prompt template is part of what trains: count its text too
        def text(r):
            return alpaca_prompt(str(r.get("instruction", "")), str(r.get("input", "") or "")) + str(r.get("output", ""))
        what = "Alpaca prompt + output"
    else:
        text, what = (lambda r: r), "every text field"
    tokens = sum(min(math.ceil(_text_bytes(text(r)) / BYTES_PER_TOKEN), recipe.max_length) for r in train)
    return DataCount(str(path), len(records), len(held), len(train), tokens,
                     f"ESTIMATE: no tokenizer of {name} on this machine; UTF-8 bytes of each record's {what} / "
                     f"{BYTES_PER_TOKEN}, cut at {recipe.max_length} (pass --tokenizer DIR for an exact count)", False)


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
    return DataCount(str(path), len(records), len(held), blocks, blocks * block, how, exact)


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
    if p is not None and not read_training_records(p):
        raise UserError(f"{p} holds no records: pass the clean.jsonl that 02_clean wrote (one JSON record a line)")
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


def make_plan(task_name: str, recipe_name: str, *, base_model: str = "", accelerator: str, gpus_per_node: int,
              nodes: int, data: Path | None, tokenizer: str | None = None, tokens_override: float | None = None,
              tps_override: float | None = None, overhead_hours: float = OVERHEAD_HOURS) -> Plan:
    """`base_model`: what 03_train will load when not the recipe's (an override such as $BASE_MODEL)."""
    recipe = load_recipe(recipe_name)
    base_model = base_model or recipe.base_model
    check_layout(task_name, recipe, gpus_per_node, nodes)
    per_device, accum = recipe.hardware.micro_batch(recipe.packing)
    epochs = float(recipe.num_train_epochs)
    count = None
    if data is not None:
        count = count_data(data, recipe, tokenizer or base_model)
        tokens, source = float(count.tokens), f"{count.method}; {count.path}"
    elif tokens_override:
        tokens = float(tokens_override)
        source = ("ASSUMED: the task's TRAIN_TOKENS env (no clean.jsonl given: pass --data PATH or a --run-dir "
                  "holding data/clean.jsonl to count the real data)")
    else:
        raise UserError(f"{task_name}: no data to plan from: pass --data path/to/clean.jsonl or --run-dir RUN "
                        "(with data/clean.jsonl), or set env TRAIN_TOKENS")
    tp = throughput(recipe.name, accelerator, tps_override)
    gpus = gpus_per_node * nodes
    steps_per_epoch = optimizer_steps = None
    examples = count.examples if count is not None else None
    if examples is None and recipe.format == "text":  # a stated corpus size is a number of blocks too
        examples = int(tokens) // recipe.max_length
        tokens = float(examples * recipe.max_length)
    if examples is not None:
        steps_per_epoch = math.ceil(examples / (per_device * accum * gpus))  # as lib.train.sft counts them
        optimizer_steps = math.ceil(steps_per_epoch * epochs)
    trained = tokens * epochs
    compute_h = trained / (tp.tokens_per_s_per_gpu * gpus) / 3600.0
    hyper = {k: getattr(recipe, k) for k in ("format", "max_length", "packing", "effective_batch", "num_train_epochs",
                                             "learning_rate", "lr_scheduler_type", "warmup_ratio", "weight_decay",
                                             "bf16", "fsdp", "gradient_checkpointing", "attn_implementation")}
    hyper["lora"] = asdict(recipe.lora) if recipe.lora is not None else None
    return Plan(task=task_name, recipe=recipe.name, base_model=base_model, hyperparameters=hyper, accelerator=accelerator, nodes=nodes,
                gpus_per_node=gpus_per_node, epochs=epochs, per_device_batch=per_device, grad_accum=accum, data=count,
                tokens_per_epoch=tokens, tokens_source=source, steps_per_epoch=steps_per_epoch,
                optimizer_steps=optimizer_steps, trained_tokens=trained, tokens_per_s_per_gpu=tp.tokens_per_s_per_gpu,
                throughput_source=tp.source, compute_hours=compute_h, overhead_hours=overhead_hours,
                created=time.time())


def describe_plan(p: Plan) -> list[str]:
    """The plan's lines, each with the inputs of its formula (hand-checkable)."""
    h = p.hyperparameters
    lines = [f"model:     {p.base_model} (recipe {p.recipe}; format {h['format']}, max_length {h['max_length']}, "
             f"lr {h['learning_rate']:g} {h['lr_scheduler_type']}, warmup {h['warmup_ratio']:g}, "
             f"weight decay {h['weight_decay']:g}, packing {h['packing']}, fsdp {h['fsdp']}, "
             f"lora {'r=' + str(h['lora']['r']) if h['lora'] else 'no'})",
             f"compute:   {p.nodes} node(s) x {p.gpus_per_node} {p.accelerator} = {p.gpus} GPUs"]
    if p.data is not None:
        d = p.data
        lines.append(f"data:      {d.records:,} records - {d.heldout:,} held out ({HELDOUT_FRACTION:g}, as 03_train) = "
                     f"{d.examples:,} examples, {d.tokens:,} tokens per epoch [{p.tokens_source}]")
        lines.append(f"steps:     ceil({d.examples:,} examples / ({p.per_device_batch} per device x {p.grad_accum} accum "
                     f"x {p.gpus} GPUs = {p.effective_batch})) = {p.steps_per_epoch:,} per epoch x {p.epochs:g} epochs "
                     f"= {p.optimizer_steps:,} optimizer steps")
    elif p.steps_per_epoch is not None:  # text format: blocks follow from the stated token count
        blocks = int(p.tokens_per_epoch) // h["max_length"]
        lines.append(f"data:      {p.tokens_per_epoch:,.0f} tokens per epoch = {blocks:,} blocks of {h['max_length']} "
                     f"[{p.tokens_source}]")
        lines.append(f"steps:     ceil({blocks:,} blocks / ({p.per_device_batch} per device x {p.grad_accum} accum "
                     f"x {p.gpus} GPUs = {p.effective_batch})) = {p.steps_per_epoch:,} per epoch x {p.epochs:g} epochs "
                     f"= {p.optimizer_steps:,} optimizer steps")
    else:
        lines.append(f"data:      {p.tokens_per_epoch:,.0f} tokens per epoch [{p.tokens_source}]")
        lines.append(f"steps:     unknown until clean.jsonl is counted (batch {p.per_device_batch} per device x "
                     f"{p.grad_accum} accum x {p.gpus} GPUs = {p.effective_batch} examples per step)")
    lines.append(f"tokens:    {p.tokens_per_epoch:,.0f} x {p.epochs:g} epochs = {p.trained_tokens:,.0f} trained tokens")
    lines.append(f"speed:     {p.tokens_per_s_per_gpu:g} tokens/s/GPU [{p.throughput_source}]")
    return lines


def save_plan(run_dir: str | os.PathLike, plan: Plan) -> Path:
    path = plan_path(run_dir, plan.task)
    atomic_write_json(path, asdict(plan))
    return path

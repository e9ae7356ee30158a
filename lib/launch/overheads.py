"""What a training run spends besides its training steps, as the plan's own lines, each from a rate.

    provisioning      the node up and set up (cloud only): a row of lib/data/throughput.yaml, or the
                      task's OVERHEAD_HOURS env
    model load        weights in the dtype they train in (parameters x 4 bytes, 2 for LoRA's bf16 base on
                      a GPU) / the model-load rate (download included on a fresh node)
    checkpoint writes saves x checkpoint bytes / the write rate, + the published model. A checkpoint is
                      what Trainer writes: full = parameters x (4 weights + 8 AdamW moments); LoRA = the
                      adapters (and modules_to_save) x 12; embeddings = weights x 4 + the embedding rows x 8
    held-out loss     base and tuned model, one forward each over the held-out tokens (at the training
                      pace x forward / training FLOPs), + reloading the published model
    preemptions       spot only: expected preemptions = rate per node-hour x nodes x run hours; each
                      recomputes half a checkpoint interval on average and restarts (provisioning + load)

A rate is the newest measured row of this project for the accelerator (`python -m lib.launch --calibrate
runs/<id>` carries a run's own model-load and checkpoint-write rates from its train/metrics.json), else
the newest bench/bench_train_gpu.py row of that accelerator, else the cited or assumed row of
lib/data/throughput.yaml `overheads:`; every line names which.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from lib.budget.throughput import ModelShape
from lib.core.errors import UserError

SAVES_PER_RUN = 4  # 03_train's default save_steps = total steps // 4 (lib/train/sft.py training_arguments)
ADAM_BYTES = 8  # two fp32 moments per trained parameter


@dataclass
class Overhead:
    name: str
    hours: float
    formula: str
    source: str  # "measured: ..." | "cited: ..." | "assumed: ..." | "unverified: ..."
    count: int = 0  # how many times it happens (checkpoint writes: the saves + the published model)

    def line(self) -> str:
        return f"overhead:  {self.name}: {self.hours * 3600:,.0f} s = {self.formula} [{self.source}]"

    def as_dict(self) -> dict:
        return asdict(self)


def rate(table: dict, key: str, accelerator: str) -> tuple[float, str]:
    """(value, its source) of overhead `key` (model_load | checkpoint_write: bytes/s) on `accelerator`:
    the newest measured row of that accelerator with `<key>_bytes_per_s`, else the table's cpu / cloud row."""
    field = f"{key}_bytes_per_s"
    rows = [r for r in table.get("measured") or [] if r.get("accelerator") == accelerator and r.get(field)]
    if rows:
        r = rows[-1]
        return float(r[field]), f"measured: run {r.get('run')} on {r.get('date')} ({accelerator}, {r.get('recipe')})"
    rows = [r for r in table.get("bench") or [] if r.get("accelerator") == accelerator and r.get(field)]
    if rows:  # bench/bench_train_gpu.py on a machine with this accelerator
        r = rows[-1]
        return float(r[field]), f"measured: {r.get('command')} on {r.get('device')}, {r.get('date')}"
    row = ((table.get("overheads") or {}).get(key) or {}).get("cpu" if accelerator == "cpu" else "cloud")
    if not row:
        raise UserError(f"no {key} rate for {accelerator} in lib/data/throughput.yaml overheads: add a cited row, "
                        "or calibrate from a run (python -m lib.launch --calibrate runs/<id>)")
    return float(row["bytes_per_s"]), str(row["source"])


def lora_params(shape: ModelShape, lora: dict) -> int:
    """Parameters of LoRA adapters (r x (in + out) per targeted matrix and layer) and of modules_to_save."""
    h, kv = shape.hidden, shape.hidden * shape.kv_heads // shape.heads
    dims = {"q_proj": (h, h), "o_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv),
            "gate_proj": (h, shape.intermediate), "up_proj": (h, shape.intermediate),
            "down_proj": (shape.intermediate, h)}
    adapters = sum(lora["r"] * sum(dims.get(m, (h, h))) for m in lora.get("target_modules") or []) * shape.layers
    return adapters + len(lora.get("modules_to_save") or []) * h * shape.vocab


def checkpoint_bytes(shape: ModelShape, method: str, lora: dict | None) -> tuple[float, str]:
    """Bytes of one Trainer checkpoint (module doc) and how they were counted."""
    if method == "lora" and lora:
        n = lora_params(shape, lora)
        return n * (4 + ADAM_BYTES), f"{n / 1e6:,.1f}M adapter parameters x 12 B"
    if method == "embeddings":
        rows = shape.hidden * shape.vocab * (1 if shape.tied_embeddings else 2)
        return shape.params * 4 + rows * ADAM_BYTES, f"{shape.params / 1e9:.2f}B parameters x 4 B + embedding rows x 8 B"
    return shape.params * (4 + ADAM_BYTES), f"{shape.params / 1e9:.2f}B parameters x 12 B (fp32 weights + AdamW)"


@dataclass
class RunShape:
    """What the overheads depend on, from the plan."""
    shape: ModelShape
    method: str
    lora: dict | None
    accelerator: str
    nodes: int
    on_gpu_bf16_base: bool  # LoRA's frozen base loads in bf16 on a GPU (lib/train/model.py)
    compute_hours: float
    steps: int | None
    heldout_tokens: float
    forward_share: float  # forward FLOPs / training hardware FLOPs per token
    tokens_per_s: float  # real tokens/s of the whole run (all GPUs)


def overheads(r: RunShape, table: dict, *, spot: bool, provisioning_hours: float | None = None) -> list[Overhead]:
    """The plan's overhead lines (module doc), in the order a run meets them."""
    out = []
    cloud = r.accelerator != "cpu"
    if cloud:
        if provisioning_hours is not None:
            out.append(Overhead("provisioning + setup", provisioning_hours, f"{provisioning_hours:g} h",
                                "the task's OVERHEAD_HOURS env"))
        else:
            row = (table.get("overheads") or {}).get("provisioning") or {}
            out.append(Overhead("provisioning + setup", float(row.get("hours", 0.0)), f"{row.get('hours', 0):g} h",
                                str(row.get("source", "no row in lib/data/throughput.yaml"))))
    load_rate, load_src = rate(table, "model_load", r.accelerator)
    load_bytes = r.shape.params * (2 if r.on_gpu_bf16_base else 4)
    out.append(Overhead("model download + load", load_bytes / load_rate / 3600,
                        f"{r.shape.params / 1e9:.2f}B parameters x {load_bytes / r.shape.params:g} B = "
                        f"{load_bytes / 1e9:,.2f} GB / {load_rate / 1e6:,.0f} MB/s", load_src))
    out.append(_checkpoints(r, table, load_bytes))
    out.append(_heldout(r, load_bytes, load_rate))
    if cloud and spot:
        out.append(_preemptions(r, table, out))
    return out


def _checkpoints(r: RunShape, table: dict, model_bytes: float) -> Overhead:
    write, src = rate(table, "checkpoint_write", r.accelerator)
    size, how = checkpoint_bytes(r.shape, r.method, r.lora)
    saves = r.steps // max(1, r.steps // SAVES_PER_RUN) if r.steps else SAVES_PER_RUN
    total = saves * size + model_bytes  # + the published model, weights only
    return Overhead("checkpoint writes", total / write / 3600,
                    f"({saves} saves x {size / 1e9:,.2f} GB [{how}] + the published model {model_bytes / 1e9:,.2f} GB)"
                    f" / {write / 1e6:,.0f} MB/s", src, count=saves + 1)


def _heldout(r: RunShape, model_bytes: float, load_rate: float) -> Overhead:
    seconds = 2 * r.heldout_tokens * r.forward_share / r.tokens_per_s + model_bytes / load_rate if r.tokens_per_s else 0.0
    return Overhead("held-out loss", seconds / 3600,
                    f"2 forwards x {r.heldout_tokens:,.0f} held-out tokens x {r.forward_share:.2f} (forward / training "
                    f"FLOPs) / {r.tokens_per_s:,.0f} tokens/s + reloading the published model",
                    "the plan's own speed and model-load rate")


def _preemptions(r: RunShape, table: dict, before: list[Overhead]) -> Overhead:
    row = (table.get("overheads") or {}).get("preemption") or {}
    per_hour = float(row.get("per_node_hour", 0.0))
    run_hours = r.compute_hours + sum(o.hours for o in before)
    expected = per_hour * r.nodes * run_hours
    saves = r.steps // max(1, r.steps // SAVES_PER_RUN) if r.steps else SAVES_PER_RUN
    interval = r.compute_hours / max(saves, 1)
    restart = sum(o.hours for o in before if o.name in ("provisioning + setup", "model download + load"))
    return Overhead("spot preemptions", expected * (interval / 2 + restart),
                    f"{per_hour:.4f}/node-hour x {r.nodes} node(s) x {run_hours:.2f} h = {expected:.2f} expected x "
                    f"(half a checkpoint interval {interval / 2:.2f} h + restart {restart:.2f} h)",
                    str(row.get("source", "no row in lib/data/throughput.yaml")))

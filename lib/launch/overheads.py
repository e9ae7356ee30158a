"""What a training run spends besides its training steps, as the plan's own lines, each from a rate.

    provisioning      the node up and set up (cloud only): a row of lib/data/throughput.yaml, or the
                      task's OVERHEAD_HOURS env
    model load        weights in the dtype they train in (parameters x 4 bytes, 2 for LoRA's bf16 base on
                      a GPU) / the model-load rate (download included on a fresh node)
    checkpoint writes saves x checkpoint bytes / the write rate, + the published model (DPO: the model
                      only; it writes no intermediate checkpoint, lib/train/dpo.py). A checkpoint is
                      what Trainer writes (lib/budget/checkpoints.py checkpoint_bytes); the saves are
                      03_train's: its explicit save_steps, else the Young/Daly interval sqrt(2 C M)
                      (lib/budget/checkpoints.py interval: on-demand or a run shorter than it = the end only)
    held-out loss     base and tuned model, one forward each over the held-out tokens (at the training
                      pace x forward / training FLOPs), + reloading the published model; DPO: its held-out
                      evaluations (before the first step and 4 during) + the reference's stored forward
    preemptions       spot only: expected preemptions = rate per node-hour x nodes x run hours; each
                      recomputes half a checkpoint interval on average (the whole run from the start
                      when it saves only at its end) and restarts (provisioning + load)

A rate is the newest measured row of this project for the accelerator (`python -m lib.launch --calibrate
runs/<id>` carries a run's own model-load and checkpoint-write rates from its train/metrics.json), else
the newest bench/bench_train_gpu.py row of that accelerator, else the cited or assumed row of
lib/data/throughput.yaml `overheads:`; every line names which.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from lib.budget.checkpoints import Interval, checkpoint_bytes, interval, mtbf_seconds, preemption_rate, rate
from lib.budget.throughput import ModelShape


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
    save_steps: int = 0  # 03_train's explicit save_steps (0 = the Young/Daly interval)
    dpo: bool = False  # DPO (lib/train/dpo.py): no intermediate checkpoint; held-out pairs evaluated 5 times


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
    every, writes = _checkpoints(r, table, load_bytes, spot=spot and cloud)
    out.append(writes)
    out.append(_heldout(r, load_bytes, load_rate))
    if cloud and spot:
        out.append(_preemptions(r, table, out, every))
    return out


def _checkpoints(r: RunShape, table: dict, model_bytes: float, *, spot: bool) -> tuple[Interval, Overhead]:
    """03_train's saves for this run by the one rule of lib/budget/checkpoints.py (C = one checkpoint / the
    write rate, M = the spot cluster's mean time between preemptions), and the line that prices them."""
    write, src = rate(table, "checkpoint_write", r.accelerator)
    size, how = checkpoint_bytes(r.shape, r.method, r.lora)
    mtbf = mtbf_seconds(preemption_rate(table)[0], r.nodes, spot)
    if r.dpo:  # only the published model; a preempted run starts again (lib/train/dpo.py)
        every = Interval(write_s=size / write, mtbf_s=mtbf, tau_s=None, run_s=r.compute_hours * 3600, steps=r.steps,
                         save_steps=r.steps, saves=1, explicit=False)
        return every, Overhead("checkpoint writes", model_bytes / write / 3600,
                               f"the published model {model_bytes / 1e9:,.2f} GB / {write / 1e6:,.0f} MB/s; no "
                               "intermediate checkpoint (DPO: lib/train/dpo.py saves only the model)", src, count=1)
    every = interval(size / write, mtbf, r.compute_hours * 3600, r.steps, r.save_steps)
    total = every.saves * size + model_bytes  # + the published model, weights only
    return every, Overhead("checkpoint writes", total / write / 3600,
                           f"({every.saves} save{'s' if every.saves != 1 else ''} x {size / 1e9:,.2f} GB [{how}] + the published model {model_bytes / 1e9:,.2f} GB)"
                           f" / {write / 1e6:,.0f} MB/s; saves: {every.formula()}", src, count=every.saves + 1)


def _heldout(r: RunShape, model_bytes: float, load_rate: float) -> Overhead:
    # SFT: the base and the tuned model's loss. DPO: its held-out pairs before the first step and 4 times
    # during (lib/train/dpo.py eval_steps), after one stored reference forward over them
    passes, why = (6, "5 evaluations + 1 reference") if r.dpo else (2, "base and tuned model")
    seconds = passes * r.heldout_tokens * r.forward_share / r.tokens_per_s + model_bytes / load_rate if r.tokens_per_s else 0.0
    return Overhead("held-out loss", seconds / 3600,
                    f"{passes} forwards ({why}) x {r.heldout_tokens:,.0f} held-out tokens x "
                    f"{r.forward_share:.2f} (forward / training FLOPs) / {r.tokens_per_s:,.0f} tokens/s + reloading the "
                    "published model",
                    "the plan's own speed and model-load rate")


def _preemptions(r: RunShape, table: dict, before: list[Overhead], every: Interval) -> Overhead:
    per_hour, source = preemption_rate(table)
    run_hours = r.compute_hours + sum(o.hours for o in before)
    expected = per_hour * r.nodes * run_hours
    lost = every.every_s / 3600 / 2
    what = ("half the run: no intermediate checkpoint, a recovered run restarts from the beginning"
            if every.saves <= 1 else "half a checkpoint interval")
    restart = sum(o.hours for o in before if o.name in ("provisioning + setup", "model download + load"))
    return Overhead("spot preemptions", expected * (lost + restart),
                    f"{per_hour:.4f}/node-hour x {r.nodes} node(s) x {run_hours:.2f} h = {expected:.2f} expected x "
                    f"({what} {lost:.2f} h + restart {restart:.2f} h)", source)

"""How big a checkpoint is, how fast it is written, and how often a run writes one (Young/Daly).

    interval  tau = sqrt(2 x C x M)        Young 1974, "A first order approximation to the optimum
                                           checkpoint interval", CACM 17(9); Daly 2006, FGCS 22(3)
    C = one checkpoint's bytes / the write rate; M = the cluster's mean time between preemptions =
    1 / (preemptions per node-hour x nodes). No preemptions (on-demand, this machine): M is infinite and
    a run saves only at its end; so does a run shorter than tau. Trainer always saves at the last step.

`interval()` is the one rule: the launch plan prices its saves with it (lib/launch/overheads.py) and
03_train sets its save_steps with it (lib/train/sft.py), both from `rate()`, `checkpoint_bytes()` and
`preemption_rate()` over lib/data/throughput.yaml. An explicit save_steps wins over it in both.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from lib.budget.throughput import ModelShape
from lib.core.errors import UserError

ADAM_BYTES = 8  # two fp32 moments per trained parameter
CITATION = "Young 1974 (CACM 17(9)); Daly 2006 (FGCS 22(3))"


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


def preemption_rate(table: dict) -> tuple[float, str]:
    """(preemptions per node-hour on spot, its source): lib/data/throughput.yaml overheads.preemption."""
    row = (table.get("overheads") or {}).get("preemption") or {}
    return float(row.get("per_node_hour", 0.0)), str(row.get("source", "no row in lib/data/throughput.yaml"))


def lora_params(shape: ModelShape, lora: dict) -> int:
    """Parameters of LoRA adapters (r x (in + out) per targeted matrix and layer) and of modules_to_save."""
    h, kv = shape.hidden, shape.hidden * shape.kv_heads // shape.heads
    dims = {"q_proj": (h, h), "o_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv),
            "gate_proj": (h, shape.intermediate), "up_proj": (h, shape.intermediate),
            "down_proj": (shape.intermediate, h)}
    adapters = sum(lora["r"] * sum(dims.get(m, (h, h))) for m in lora.get("target_modules") or []) * shape.layers
    return adapters + len(lora.get("modules_to_save") or []) * h * shape.vocab


def checkpoint_bytes(shape: ModelShape, method: str, lora: dict | None) -> tuple[float, str]:
    """Bytes of one Trainer checkpoint and how they were counted: full = parameters x (4 weights + 8 AdamW
    moments); LoRA = the adapters (and modules_to_save) x 12; embeddings = weights x 4 + the embedding rows x 8."""
    if method == "lora" and lora:
        n = lora_params(shape, lora)
        return n * (4 + ADAM_BYTES), f"{n / 1e6:,.1f}M adapter parameters x 12 B"
    if method == "embeddings":
        rows = shape.hidden * shape.vocab * (1 if shape.tied_embeddings else 2)
        return shape.params * 4 + rows * ADAM_BYTES, f"{shape.params / 1e9:.2f}B parameters x 4 B + embedding rows x 8 B"
    return shape.params * (4 + ADAM_BYTES), f"{shape.params / 1e9:.2f}B parameters x 12 B (fp32 weights + AdamW)"


@dataclass
class Interval:
    """How often a run checkpoints, and why."""
    write_s: float  # C: seconds to write one checkpoint
    mtbf_s: float | None  # M: the cluster's mean seconds between preemptions; None = not preemptible
    tau_s: float | None  # sqrt(2 C M); None = not preemptible
    run_s: float  # the training steps' seconds
    steps: int | None  # optimizer steps of the run (None = unknown)
    save_steps: int | None  # Trainer's save_steps (None = steps unknown)
    saves: int  # Trainer checkpoints over the run, the last at its end
    explicit: bool  # save_steps was set by the recipe/notebook, not by the rule

    @property
    def every_s(self) -> float:
        """Seconds of training between two checkpoints (a preemption loses half of it on average)."""
        if self.steps and self.save_steps:
            return self.run_s * min(self.save_steps, self.steps) / self.steps
        return self.run_s / max(self.saves, 1)

    def formula(self) -> str:
        if self.explicit:
            return f"save_steps={self.save_steps} set by the recipe/notebook: {self.saves} saves"
        if self.tau_s is None:
            return "no preemptions (on-demand, or this machine): saves only at the end"
        m_h = self.mtbf_s / 3600
        c = f"{self.write_s:,.0f}" if self.write_s >= 10 else f"{self.write_s:.2g}"
        head = (f"Young/Daly tau = sqrt(2 x C {c} s x M {m_h:,.1f} h) = {self.tau_s / 3600:,.2f} h "
                f"[{CITATION}]")
        if self.tau_s >= self.run_s:
            return f"{head} >= the {self.run_s / 3600:,.2f} h of training: saves only at the end"
        if self.steps and self.save_steps:
            return f"{head}: every {self.save_steps} of {self.steps} steps, {self.saves} saves"
        return f"{head}: {self.saves} saves over the {self.run_s / 3600:,.2f} h of training (steps unknown until the data is counted)"

    def as_dict(self) -> dict:
        return {**asdict(self), "every_s": self.every_s, "formula": self.formula()}


def mtbf_seconds(per_node_hour: float, nodes: int, spot: bool) -> float | None:
    """M = 1 / (preemptions per node-hour x nodes), in seconds; None on-demand or without a rate."""
    if not spot or per_node_hour <= 0:
        return None
    return 3600.0 / (per_node_hour * max(nodes, 1))


def interval(write_s: float, mtbf_s: float | None, run_s: float, steps: int | None, save_steps: int = 0) -> Interval:
    """The checkpoint interval of a run (module doc): `save_steps` > 0 is an explicit choice and wins."""
    tau = math.sqrt(2.0 * write_s * mtbf_s) if mtbf_s else None
    if save_steps > 0:
        every = save_steps
    elif tau is None or tau >= run_s or not steps:
        every = steps  # only the end (Trainer's last-step save)
    else:
        every = max(1, round(tau / (run_s / steps)))
    if steps and every:
        saves = math.ceil(steps / every)
    elif tau is not None and tau < run_s:
        saves = math.ceil(run_s / tau)
    else:
        saves = 1
    return Interval(write_s=write_s, mtbf_s=mtbf_s, tau_s=tau, run_s=run_s, steps=steps, save_steps=every,
                    saves=saves, explicit=save_steps > 0)

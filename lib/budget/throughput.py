"""Training speed from FLOPs: a model's shape, the method, the real sequence lengths and a cited utilization.

    tokens/s/GPU = utilization x peak / FLOPs per token

`flops_per_token(shape, method, seq_len, checkpointing=)` is the one FLOP count of the project
(the launch plan, the budget report's reference column, the trainer's MFU). Per token, with N
the matmul parameters (every linear layer and the LM head; not the embedding lookup) and the
attention of a token that sees `seq_len` positions counted in full (PaLM appendix B, llm-foundry):

    forward        2 N + 4 L d s
    backward       activation gradients 2 N + 8 L d s  (attention has no weights: 2x its forward)
                   + weight gradients 2 x (trainable matmul parameters)
    full           6 N + 12 L d s
    lora           4 N + 12 L d s (+ 2 H V when the LM head trains): no weight gradients for frozen weights
    embeddings     as lora, the LM head's rows training
    checkpointing  + one forward (2 N + 4 L d s): the hardware's FLOPs, not the model's

`model` FLOPs leave the recompute out (MFU); `hardware` FLOPs count it (HFU). The priors in
lib/data/throughput.yaml are hardware utilizations (HFU, = MFU without checkpointing), so
tokens/s = HFU x peak / hardware FLOPs, and MFU = tokens/s x model FLOPs / peak.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from lib.core.errors import UserError
from lib.core.files import read_log
from lib.core.model import resolve_model
from lib.core.paths import LIB, REPO

THROUGHPUT_YAML = LIB / "data" / "throughput.yaml"
MEASURED_JSONL = LIB / "data" / "measured_throughput.jsonl"  # python -m lib.launch --calibrate appends here
METHODS = ("full", "lora", "embeddings")
MEASURED_SPREAD = 0.10  # a measured row's interval: +- this fraction (assumed run-to-run spread)


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    source: str
    tied_embeddings: bool = False  # the LM head is the input embedding (SmolLM2): one matrix stored

    @property
    def params(self) -> int:
        """Every parameter stored (matmuls + the input embedding unless tied; norms and biases left out):
        what a checkpoint and a model load move."""
        return self.matmul_params + (0 if self.tied_embeddings else self.hidden * self.vocab)

    @property
    def matmul_params(self) -> int:
        """Parameters of every matmul a token goes through: attention, MLP (gated: 3 matrices), LM head."""
        kv = self.hidden * self.kv_heads // self.heads
        per_layer = 2 * self.hidden * self.hidden + 2 * self.hidden * kv + 3 * self.hidden * self.intermediate
        return self.layers * per_layer + self.hidden * self.vocab


@dataclass(frozen=True)
class Flops:
    model: float  # per token, forward + backward (MFU's numerator)
    hardware: float  # per token, + the recomputed forward under activation checkpointing (HFU's)
    formula: str


@dataclass
class Speed:
    tokens_per_s_per_gpu: dict  # low / expected / high (real tokens when processed == trained)
    utilization: dict  # HFU low / expected / high
    mfu: float  # expected, model FLOPs
    peak_flops: float
    peak_source: str
    flops: Flops
    row: str  # the prior or measured row used, with its sources


def local_measured_path() -> Path:
    """This machine's own measured rows (a CPU run describes this machine, not the project: kept out of
    git, beside the converted model in .cache/); SHEAR_LOCAL_MEASURED names another file (tests)."""
    return Path(os.environ.get("SHEAR_LOCAL_MEASURED") or REPO / ".cache" / "measured_throughput.jsonl")


def load_table(path: str | os.PathLike = THROUGHPUT_YAML, measured: str | os.PathLike = MEASURED_JSONL,
               local: str | os.PathLike | None = None) -> dict:
    """The priors of `path` with the measured rows (`measured`, then this machine's `local` file, oldest
    first) under "measured"."""
    local = local_measured_path() if local is None else local

    def mtime(p):
        return Path(p).stat().st_mtime_ns if Path(p).is_file() else 0
    return _load(str(path), mtime(path), str(measured), mtime(measured), str(local), mtime(local))


@lru_cache(maxsize=4)
def _load(path: str, _mtime: int, measured: str, _measured_mtime: int, local: str, _local_mtime: int) -> dict:
    if not Path(path).is_file():
        raise UserError(f"{path} not found: restore lib/data/throughput.yaml from git")
    table = yaml.safe_load(Path(path).read_text()) or {}
    table["measured"] = [r for p in (measured, local) if Path(p).is_file() for r in read_log(p)]
    return table


def peak(accelerator: str, table: dict | None = None) -> tuple[float, str]:
    """Dense bf16 FLOP/s of `accelerator` (a SkyPilot name) and its datasheet; for "cpu" (a row
    whose tflops is `measured`), this machine's fp32 GEMM rate, measured once per process."""
    peaks = (table or load_table()).get("peaks") or {}
    row = peaks.get(accelerator)
    if row is None:
        raise UserError(f"unknown accelerator {accelerator!r}: use one of {', '.join(sorted(peaks))} "
                        "(or add its datasheet peak to lib/data/throughput.yaml)")
    if row["tflops"] == "measured":
        flops, how = measured_cpu_peak()
        return flops, f"{row['source']}: {how}"
    return float(row["tflops"]) * 1e12, str(row["source"])


# torch's device names in SkyPilot's accelerator vocabulary; L40S before L4, H200 before H100
DEVICE_NAMES = ("H200", "H100", "A100", "L40S", "L4", "A10G")


def device_accelerator(device_name: str) -> str | None:
    """'NVIDIA A100-SXM4-80GB' -> 'A100-80GB' (the peaks' keys); None for a device the table has no name for."""
    for key in DEVICE_NAMES:
        if key in device_name:
            return key + ("-80GB" if key == "A100" and "80GB" in device_name else "")
    return None


_CPU_PEAK: list[tuple[float, str]] = []


def measured_cpu_peak(n: int = 1024, seconds: float = 0.5) -> tuple[float, str]:
    """(FLOP/s, how) of a large fp32 GEMM on this machine's CPU with torch's threads: CPUs have no
    datasheet peak that PyTorch reaches, so the plan and the trainer's MFU share this one measurement."""
    if not _CPU_PEAK:
        import torch  # heavy: only a CPU's plan or a CPU run measures it

        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ b
            reps += 1
        rate = 2.0 * n ** 3 * reps / (time.perf_counter() - t0)
        _CPU_PEAK.append((rate, f"{rate / 1e9:,.1f} GFLOP/s, fp32 GEMM {n}x{n} for {seconds:g} s on "
                                f"{platform.machine()} x {torch.get_num_threads()} threads, "
                                f"{time.strftime('%Y-%m-%d')}"))
    return _CPU_PEAK[0]


def model_shape(name: str, table: dict | None = None) -> ModelShape:
    """The shape of `name`: its own config.json when it is on this machine, else the table's row."""
    cfg = _local_config(name)
    if cfg is not None:
        return config_shape(cfg, f"config.json of {name}")
    row = ((table or load_table()).get("models") or {}).get(name)
    if row is None:
        raise UserError(f"no shape for base model {name!r}: put its checkpoint (config.json) on this machine or add "
                        "its layers/hidden/intermediate/heads/vocab to lib/data/throughput.yaml models")
    return ModelShape(**{k: (str(v) if k == "source" else int(v)) for k, v in row.items()})


def config_shape(cfg, source: str) -> ModelShape:
    """The shape of a transformers config (a loaded model's `.config`, or a config.json read here)."""
    heads = int(getattr(cfg, "num_attention_heads", 0) or getattr(cfg, "n_head", 0) or 1)
    hidden = int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "n_embd", 0) or getattr(cfg, "d_model", 0))
    return ModelShape(
        layers=int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0) or getattr(cfg, "num_layers", 0)),
        hidden=hidden, intermediate=int(getattr(cfg, "intermediate_size", 0) or 4 * hidden), heads=heads,
        kv_heads=int(getattr(cfg, "num_key_value_heads", 0) or heads), vocab=int(cfg.vocab_size), source=source,
        tied_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)))


def _local_config(name: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(resolve_model(name), local_files_only=True)
    except (OSError, ValueError):
        return None


def recipe_method(recipe) -> str:
    """What trains: every weight ("full"), adapters ("lora"; QLoRA prices as LoRA) or new embedding rows."""
    if getattr(recipe, "trainable", "all") == "new_embeddings":
        return "embeddings"
    return "lora" if recipe.lora is not None else "full"


def flops_per_token(shape: ModelShape, method: str, seq_len: float, *, checkpointing: bool = False,
                    lm_head_trains: bool = False, reference_forwards: float = 0.0) -> Flops:
    """Training FLOPs per token (module doc). `seq_len`: the positions a token attends to, on average
    (sum of squared example lengths / sum of lengths for padding-free packing; the batch width when padded).
    `reference_forwards`: forwards of a frozen reference model per trained token (DPO: 1 while the
    reference runs beside the policy every epoch; 1 / epochs when its log-probs are stored once)."""
    if method not in METHODS:
        raise UserError(f"unknown training method {method!r}: use one of {', '.join(METHODS)}")
    n = float(shape.matmul_params)
    attn = 4.0 * shape.layers * shape.hidden * float(seq_len)  # one forward
    head = 2.0 * shape.hidden * shape.vocab
    if method == "full":
        model, formula = 6 * n + 3 * attn, "6N + 12 L d s"
    else:
        trains_head = lm_head_trains or method == "embeddings"
        model = 4 * n + 3 * attn + (head if trains_head else 0.0)
        formula = "4N + 12 L d s" + (" + 2 d V (LM head trains)" if trains_head else "") + f" ({method}: frozen weights get no weight gradients)"
    if reference_forwards:  # useful work (the loss needs it), so MFU counts it
        model += reference_forwards * (2 * n + attn)
        formula += f" + {reference_forwards:g} x (2N + 4 L d s) reference forward"
    hardware = model + (2 * n + attn if checkpointing else 0.0)
    if checkpointing:
        formula += " + (2N + 4 L d s) recomputed forward"
    return Flops(model=model, hardware=hardware, formula=formula)


def _prior(table: dict, method: str, accelerator: str, seq_len: int, checkpointing: bool) -> dict:
    for row in table.get("priors") or []:
        lo, hi = row.get("seq_len") or [0, 1 << 30]
        same_ac = row.get("checkpointing") in (None, checkpointing)  # a row without the key holds for both
        if row["method"] == method and accelerator in row["accelerators"] and lo <= seq_len <= hi and same_ac:
            return row
    raise UserError(f"no utilization prior for {method} on {accelerator} at {seq_len} tokens in lib/data/throughput.yaml: "
                    "add a cited row, calibrate from a run (python -m lib.launch --calibrate runs/<id>), or pass "
                    "--env TOKENS_PER_S_PER_GPU=N")


def measured_row(table: dict, recipe: str, accelerator: str, model: str = "") -> dict | None:
    """The newest measured row of `recipe` on `accelerator` (python -m lib.launch --calibrate); with
    `model`, of that base model only (a tiny random model's speed says nothing of the real one's)."""
    rows = [r for r in table.get("measured") or [] if r.get("recipe") == recipe and r.get("accelerator") == accelerator
            and r.get("tokens_per_s_per_gpu") and (not model or not r.get("model") or r.get("model") == model)]
    return rows[-1] if rows else None


def speed(shape: ModelShape, *, recipe: str, method: str, accelerator: str, seq_len: float, max_length: int,
          checkpointing: bool = False, lm_head_trains: bool = False, reference_forwards: float = 0.0,
          table: dict | None = None, model: str = "") -> Speed:
    """tokens/s/GPU (low / expected / high) of one recipe on one accelerator: a measured row of this
    project when there is one, else the cited utilization prior through `flops_per_token`."""
    table = table or load_table()
    pk, pk_source = peak(accelerator, table)
    fl = flops_per_token(shape, method, seq_len, checkpointing=checkpointing, lm_head_trains=lm_head_trains,
                         reference_forwards=reference_forwards)
    m = measured_row(table, recipe, accelerator, model)
    if m is not None:
        tps = float(m["tokens_per_s_per_gpu"])
        tokens = {"low": tps * (1 - MEASURED_SPREAD), "expected": tps, "high": tps * (1 + MEASURED_SPREAD)}
        util = {k: v * fl.hardware / pk for k, v in tokens.items()}
        mfu = f"{m['mfu']:.3f}" if isinstance(m.get("mfu"), (int, float)) else "n/a"
        row = (f"measured: run {m.get('run')} on {m.get('date')}: {tps:,.1f} tokens/s/GPU, MFU {mfu} "
               f"({m.get('accelerator')}, {m.get('method')}; +-{MEASURED_SPREAD:.0%} assumed spread)")
    else:
        p = _prior(table, method, accelerator, max_length, checkpointing)
        util = {k: float(p[k]) for k in ("low", "expected", "high")}
        tokens = {k: u * pk / fl.hardware for k, u in util.items()}
        row = (f"prior {method}{' + checkpointing' if checkpointing else ''} on {accelerator} (HFU low {util['low']:.2f} / expected {util['expected']:.2f} / "
               f"high {util['high']:.2f}): " + " | ".join(p.get("sources") or []))
    mfu = tokens["expected"] * fl.model / pk
    return Speed(tokens_per_s_per_gpu=tokens, utilization=util, mfu=mfu, peak_flops=pk, peak_source=pk_source,
                 flops=fl, row=row)


def reference_speed(model: str, accelerator: str, *, lora: bool = False, max_length: int = 512,
                    recipe: str = "") -> tuple[float, str]:
    """(tokens/s/GPU expected, how) for a run of `model` on `accelerator`: the launch plan's model
    (a measured row of `recipe`, else the prior) at the run's max_length as the attention span
    (an upper bound: the report has no example lengths). The budget report's "same run on A100s"."""
    method = "lora" if lora else "full"
    sp = speed(model_shape(model), recipe=recipe, method=method, accelerator=accelerator, seq_len=max_length,
               max_length=max_length)
    how = (f"{sp.tokens_per_s_per_gpu['expected']:,.0f} tok/s/GPU = HFU {sp.utilization['expected']:.2f} x "
           f"{sp.peak_flops / 1e12:g} TFLOP/s / {sp.flops.hardware:.4g} FLOPs per token ({model}, {method}; "
           "lib/data/throughput.yaml, as the launch plan)")
    return sp.tokens_per_s_per_gpu["expected"], how

"""Throughput and model FLOPs utilisation (MFU), and held-out loss.

Model FLOPs per trained sequence of length s (forward + backward, PaLM appendix B):
    6 * N * s  +  12 * n_layers * d_model * s^2
N = non-embedding parameters. Padding is not useful work: MFU counts real tokens only, so
padding shows up as lower MFU, which is the point of measuring it.
"""
from __future__ import annotations

import math
import time

import torch  # noqa: TID253 -- a trainer module: every function here measures torch models

# Dense bf16 tensor-core peaks (FLOP/s) from vendor data sheets; keys match torch device names.
PEAK_BF16 = {
    "H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
    "A10G": 125e12, "A10": 125e12, "V100": 125e12, "T4": 65e12, "RTX 4090": 165e12,
}


def non_embedding_params(model) -> int:
    emb = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is not None:
        emb |= {id(p) for p in out.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in emb)


def model_shape(model) -> tuple[int, int]:
    cfg = model.config
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None) or getattr(cfg, "num_layers")
    d = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embed", None) or cfg.d_model
    return int(layers), int(d)


def train_flops(n_params: int, n_layers: int, d_model: int, tokens: int, sum_sq_lengths: int) -> float:
    return 6.0 * n_params * tokens + 12.0 * n_layers * d_model * sum_sq_lengths


def device_peak_flops(device: torch.device | str | None = None) -> tuple[float | None, str]:
    """Peak FLOP/s of the training device and where the number comes from."""
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        name = torch.cuda.get_device_name(device)
        for key, peak in PEAK_BF16.items():
            if key in name:
                return peak, f"{name} bf16 data sheet"
        return None, f"{name}: unknown peak"
    return measured_cpu_peak(), "CPU fp32 GEMM measured here"


_CPU_PEAK: list[float] = []


def measured_cpu_peak(n: int = 1024, seconds: float = 0.5) -> float:
    """CPUs have no honest data-sheet peak for PyTorch; a large fp32 GEMM is what they can do."""
    if _CPU_PEAK:
        return _CPU_PEAK[0]
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    _CPU_PEAK.append(2.0 * n ** 3 * reps / (time.perf_counter() - t0))
    return _CPU_PEAK[0]


@torch.no_grad()
def heldout_loss(model, examples: list[dict], collator, batch_size: int = 4) -> float:
    """Mean cross-entropy per label token over held-out examples (each run alone: no packing effects)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for i in range(0, len(examples), batch_size):
        batch = collator(examples[i: i + batch_size])
        batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        labels = batch.pop("labels")
        logits = model(**batch, use_cache=False).logits.float()
        shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
        mask = shift_labels != -100
        loss = torch.nn.functional.cross_entropy(shift_logits[mask], shift_labels[mask], reduction="sum")
        total += float(loss)
        count += int(mask.sum())
    model.train(was_training)
    return total / max(count, 1) if count else math.nan

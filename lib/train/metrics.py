"""The training device's peak and held-out loss.

MFU is measured with the launch plan's one FLOP rule (lib/budget/throughput.py `flops_per_token`,
the model's own config, the method, the real attention span) over the device's peak from the same
table (`peak`: datasheet for GPUs, a GEMM measured here for the CPU), so that a plan and the run it
predicts state MFU for the same tokens/s identically. Padding is not useful work: MFU counts real
tokens only, so padding shows up as lower MFU, which is the point of measuring it.
"""
from __future__ import annotations

import math

import torch  # noqa: TID253 -- a trainer module: every function here measures torch models

from lib.budget.throughput import device_accelerator, peak
from lib.core.errors import UserError


def device_peak_flops() -> tuple[float | None, str, str]:
    """(peak FLOP/s, its source, accelerator name) of the training device: a GPU's datasheet row of
    lib/data/throughput.yaml, or the CPU's measured GEMM rate; (None, why, name) for a GPU the table lacks."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        acc = device_accelerator(name)
        if acc is None:
            return None, f"{name}: no peak in lib/data/throughput.yaml", name
        try:
            flops, source = peak(acc)
        except UserError as e:
            return None, str(e), acc
        return flops, f"{name}: {source}", acc
    flops, source = peak("cpu")
    return flops, source, "cpu"


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

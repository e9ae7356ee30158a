"""The picture after training: loss against the base/tuned held-out loss, throughput, efficiency.

Takes `train/metrics.json` as a dict and returns a Figure; lib/core/figures.py saves and shows it.
Drawn on a bare `matplotlib.figure.Figure` (no pyplot): nothing here touches the kernel's backend.
"""
from __future__ import annotations

from matplotlib.figure import Figure  # noqa: TID253 -- drawing is this module's whole job


def training_figure(m: dict) -> Figure:
    curve, tput = m.get("loss_curve") or [], m.get("throughput") or []
    base, tuned = m.get("base_heldout_loss"), m.get("tuned_heldout_loss")
    fig = Figure(figsize=(15, 3.8))
    axes = fig.subplots(1, 3)
    ax = axes[0]
    ax.plot([r["step"] for r in curve], [r["loss"] for r in curve], marker="o", label="training loss")
    if base is not None:
        ax.axhline(base, color="grey", ls="--", label=f"base held-out {base:.3f}")
    if tuned is not None:
        ax.axhline(tuned, color="green", ls="--", label=f"tuned held-out {tuned:.3f}")
    ax.set(xlabel="step", ylabel="loss per label token", title=f"{m.get('recipe', '')}: loss")
    ax.legend()
    steps = [r["step"] for r in tput]
    axes[1].plot(steps, [r["tokens_per_s"] for r in tput], label="positions/s (incl. padding)")
    axes[1].plot(steps, [r["useful_tokens_per_s"] for r in tput], label="useful tokens/s")
    axes[1].set(xlabel="step", ylabel="tokens / s", title="throughput (all processes)")
    axes[1].legend()
    axes[2].plot(steps, [r["useful_share"] or 0 for r in tput], label="useful-token share")
    axes[2].plot(steps, [r["mfu"] or 0 for r in tput], label=f"MFU vs {m.get('peak_source', '?')}")
    axes[2].set(xlabel="step", ylim=(0, 1.05), title="efficiency")
    axes[2].legend()
    fig.tight_layout()
    return fig


def dpo_figure(m: dict) -> Figure:
    """DPO over training (lib/train/dpo.py metrics): the reward margin and the preference accuracy
    (share of pairs whose chosen answer gained more log-probability over the reference than the
    rejected one), on the training batches and on the held-out pairs (step 0: before training)."""
    fig = Figure(figsize=(11, 3.6))
    axes = fig.subplots(1, 2)
    for ax, key, label in ((axes[0], "margin", "reward margin (chosen - rejected)"),
                           (axes[1], "accuracy", "preference accuracy")):
        for curve, style, name in ((m.get("train_curve") or [], ".-", "training batches"),
                                   (m.get("heldout_curve") or [], "o-", f"held out ({m.get('heldout_pairs', '?')} pairs)")):
            pts = [(r["step"], r[key]) for r in curve if r.get(key) is not None]
            ax.plot([s for s, _ in pts], [v for _, v in pts], style, label=name)
        ax.set(xlabel="optimizer step", ylabel=label, title=f"{m.get('recipe', '')}: {label} (beta {m.get('beta')})")
        ax.legend(fontsize=8)
    axes[1].set_ylim(-0.05, 1.05)
    fig.tight_layout()
    return fig

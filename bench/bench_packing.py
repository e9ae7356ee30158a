"""CPU benchmark: padding-free packing vs Alpaca-style per-batch padding.

Same model, same examples, same optimizer steps, measured side by side in one run (the two
modes alternate step by step, so machine noise hits both alike). The examples are an
Alpaca-like length distribution built from ../shared/data/bench_instructions.jsonl (real
GPTeacher/GSM8K text cut to Alpaca-shaped lengths, see `alpaca_like_records`; the Alpaca
52K set itself is not available offline), formatted with the Alpaca prompt and masked
exactly as training does, in random order as Alpaca's sampler draws them.

Each optimizer step takes the same `--step-examples` examples in both modes, split into
micro-batches with gradient accumulation as the Trainer does. A layout `P:Q` runs padding
with micro-batches of P examples and packing with micro-batches of Q. The headline, `4:16`,
is each mode as the Alpaca recipes configure it (lib/recipes/alpaca_7b.yaml): padding at
Alpaca's per-device 4, whose worst case reserves 4 x 512 positions, and packing at 16,
whose micro-batches hold about as many real tokens; `4:4` and `16:16` are the same
micro-batch in both modes. Positions per micro-batch (mean and max) are reported because
activation memory follows them.

    .venv/bin/python bench/bench_packing.py                          # ~10 minutes on 2 cores
    .venv/bin/python bench/bench_packing.py --examples 32 --layouts 4:16   # quick look

Reports useful (non-padding) tokens per second of full training steps (forward, backward,
AdamW) for both modes and their ratio. Model: a random-init LLaMA-architecture model (the
embedded SmolLM2 tokenizer and vocabulary, 4 layers of width 256) -- the ratio measures the
data layout, not the model.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _words(records, rng, k: int) -> str:
    """k words of real text: the start of one record's output, topped up from others if short."""
    out: list[str] = []
    while len(out) < k:
        out += rng.choice(records)["output"].split()
    return " ".join(out[:k])


def alpaca_like_records(n: int, seed: int) -> list[dict]:
    """Alpaca-shaped records from real text: the Alpaca 52K set is not available offline, so
    the text comes from bench_instructions.jsonl and the LENGTHS follow Alpaca's shape --
    short instructions (log-normal, median 12 words), an input on 40% of records (median 15
    words), and heavy-tailed outputs (log-normal, median 30 words, sigma 1.0: many one-line
    answers, a few essays). That skew is what makes per-batch padding expensive."""
    path = REPO.parent / "shared" / "data" / "bench_instructions.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} is absent: the benchmark needs the shared reference data beside the checkout")
    records = [json.loads(line) for line in path.open(encoding="utf-8")]
    rng = random.Random(seed)
    lognormal = lambda median, sigma, hi: max(1, min(hi, round(rng.lognormvariate(math.log(median), sigma))))
    out = []
    for i in range(n):
        src = rng.choice(records)
        instruction = " ".join(src["instruction"].split()[: lognormal(12, 0.5, 80)])
        inp = _words(records, rng, lognormal(15, 0.7, 120)) if rng.random() < 0.4 else ""
        out.append({"id": f"bench-{i}", "instruction": instruction, "input": inp,
                    "output": _words(records, rng, lognormal(30, 1.0, 400))})
    return out


def alpaca_like_examples(tok, n: int, max_length: int, seed: int):
    from lib.core.masking import encode_records

    return encode_records(alpaca_like_records(n, seed), tok, fmt="alpaca", max_length=max_length)


def optimizer_step(model, opt, collate, examples, micro: int) -> tuple[float, list[int]]:
    """One optimizer step over `examples`, in micro-batches of `micro` examples with gradient
    accumulation, as the Trainer runs it. Returns seconds and positions per micro-batch."""
    import torch

    chunks = [examples[i:i + micro] for i in range(0, len(examples), micro)]
    t0 = time.perf_counter()
    positions = []
    for chunk in chunks:
        batch = collate(chunk)
        positions.append(batch["input_ids"].numel())
        out = model(**batch, use_cache=False)
        (out.loss / len(chunks)).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    return time.perf_counter() - t0, positions


def compare(model, opt, tok, examples, padded_micro: int, packed_micro: int, step_examples: int,
            max_length: int, layout: str) -> dict:
    """Both layouts over the same examples in the same optimizer steps of `step_examples`,
    alternating step by step so machine noise hits both alike. Packing as training does it:
    `layout` is what prepare_for_packing chose (on CPU: one row per micro-batch, sdpa_varlen)."""
    from lib.train.packing import make_collator

    collate = {"padded": make_collator(tok, packing=False),
               "packed": make_collator(tok, packing=True, layout=layout, row_tokens=max_length)}
    micro = {"padded": padded_micro, "packed": packed_micro}
    steps = [examples[i:i + step_examples] for i in range(0, len(examples) - step_examples + 1, step_examples)]
    for mode in collate:  # warm-up, not timed
        optimizer_step(model, opt, collate[mode], steps[0], micro[mode])
    t = {"padded": 0.0, "packed": 0.0}
    pos: dict[str, list[int]] = {"padded": [], "packed": []}
    useful = 0
    for i, group in enumerate(steps):
        useful += sum(len(e["input_ids"]) for e in group)
        for mode in (("padded", "packed") if i % 2 == 0 else ("packed", "padded")):
            s, p = optimizer_step(model, opt, collate[mode], group, micro[mode])
            t[mode] += s
            pos[mode] += p
    return {
        "padded_micro_batch": padded_micro, "packed_micro_batch": packed_micro, "step_examples": step_examples,
        "optimizer_steps": len(steps), "useful_tokens": useful,
        "padded_useful_share": round(useful / sum(pos["padded"]), 3),
        "packed_useful_share": round(useful / sum(pos["packed"]), 3),
        # activation memory follows the positions of one micro-batch
        "padded_positions_per_micro": [round(sum(pos["padded"]) / len(pos["padded"])), max(pos["padded"])],
        "packed_positions_per_micro": [round(sum(pos["packed"]) / len(pos["packed"])), max(pos["packed"])],
        "padded_useful_tokens_per_s": round(useful / t["padded"], 1),
        "packed_useful_tokens_per_s": round(useful / t["packed"], 1),
        "ratio": round(t["padded"] / t["packed"], 2),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=96, help="examples, the same for every layout")
    p.add_argument("--layouts", default="4:16,4:4,16:16",
                   help="padded:packed micro-batch pairs; 4:16 = each mode as the Alpaca recipes configure it")
    p.add_argument("--step-examples", type=int, default=16,
                   help="examples per optimizer step on one device (Alpaca: 128 over 8 GPUs)")
    p.add_argument("--max-length", type=int, default=512, help="Alpaca's max length")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    from lib.core.model import embedded_model_dir
    from lib.train.packing import prepare_for_packing
    from lib.train.tiny import tiny_model

    torch.manual_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(embedded_model_dir())
    examples, report = alpaca_like_examples(tok, args.examples, args.max_length, args.seed)
    model = tiny_model("llama", tok, seed=args.seed, hidden=args.hidden, layers=args.layers, heads=4)
    layout = prepare_for_packing(model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    lengths = sorted(len(e["input_ids"]) for e in examples)
    res = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(), "packed_layout": layout,
        "model": f"random LLaMA {args.layers}x{args.hidden}, vocab {len(tok)}",
        "data": "bench_instructions.jsonl text cut to Alpaca-shaped lengths (Alpaca 52K not available offline)",
        "examples": len(examples), "median_tokens": lengths[len(lengths) // 2], "max_tokens": lengths[-1],
        "runs": [compare(model, opt, tok, examples, int(a), int(b), args.step_examples, args.max_length, layout)
                 for a, b in (pair.split(":") for pair in args.layouts.split(","))],
    }
    print(json.dumps(res, indent=1))
    for r in res["runs"]:
        print(f"padded micro-batch {r['padded_micro_batch']:>2} vs packed {r['packed_micro_batch']:>2}: packing "
              f"{r['ratio']:.2f}x useful tokens/s ({r['packed_useful_tokens_per_s']:.0f} vs "
              f"{r['padded_useful_tokens_per_s']:.0f}); useful share {r['padded_useful_share']:.0%} vs "
              f"{r['packed_useful_share']:.0%}; positions per micro-batch mean/max "
              f"{r['padded_positions_per_micro']} vs {r['packed_positions_per_micro']}")
    return res


if __name__ == "__main__":
    main()

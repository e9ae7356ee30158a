"""CPU benchmark: padding-free packing vs Alpaca-style per-batch padding.

Same model, same examples, same batches, measured side by side in one run (the two modes
alternate batch by batch, so machine noise hits both alike). The examples are an
Alpaca-like length distribution built from ../shared/data/bench_instructions.jsonl (real
GPTeacher/GSM8K text cut to Alpaca-shaped lengths, see `alpaca_like_records`; the Alpaca
52K set itself is not available offline), formatted with the Alpaca prompt and masked
exactly as training does, in random order as Alpaca's sampler draws them.

    .venv/bin/python bench/bench_packing.py                         # a few minutes on 2 cores
    .venv/bin/python bench/bench_packing.py --examples 16 --batch-sizes 4   # quick look

Reports useful (non-padding) tokens per second of a full training step (forward, backward,
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
    from lib.train.masking import encode_records

    return encode_records(alpaca_like_records(n, seed), tok, fmt="alpaca", max_length=max_length)


def step_time(model, opt, batch) -> float:
    import torch

    t0 = time.perf_counter()
    out = model(**batch, use_cache=False)
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    return time.perf_counter() - t0


def compare(model, opt, tok, examples, batch_size: int, max_length: int) -> dict:
    """Both layouts over the same examples in the same batches, alternating batch by batch.
    Packing as training does it on SDPA: rows of at most max_length tokens, position_ids resets."""
    from lib.train.packing import make_collator

    pad, pack = make_collator(tok, packing=False), make_collator(tok, packing=True, row_tokens=max_length)
    batches = [examples[i:i + batch_size] for i in range(0, len(examples) - batch_size + 1, batch_size)]
    step_time(model, opt, pad(batches[0]))  # warm-up, not timed
    step_time(model, opt, pack(batches[0]))
    t = {"padded": 0.0, "packed": 0.0}
    positions = {"padded": 0, "packed": 0}
    useful = 0
    for i, b in enumerate(batches):
        useful += sum(len(e["input_ids"]) for e in b)
        for mode in (("padded", "packed") if i % 2 == 0 else ("packed", "padded")):
            batch = (pad if mode == "padded" else pack)(b)
            positions[mode] += batch["input_ids"].numel()
            t[mode] += step_time(model, opt, batch)
    return {
        "batch_size": batch_size, "batches": len(batches), "useful_tokens": useful,
        "padded_useful_share": round(useful / positions["padded"], 3),
        "packed_useful_share": round(useful / positions["packed"], 3),
        "padded_useful_tokens_per_s": round(useful / t["padded"], 1),
        "packed_useful_tokens_per_s": round(useful / t["packed"], 1),
        "ratio": round(t["padded"] / t["packed"], 2),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=64, help="examples, the same for every batch size")
    p.add_argument("--batch-sizes", default="4,16", help="per-device batch sizes to compare (Alpaca used 4)")
    p.add_argument("--max-length", type=int, default=512, help="Alpaca's max length")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    from lib.model import embedded_model_dir
    from lib.train.packing import prepare_for_packing
    from lib.train.tiny import tiny_model

    torch.manual_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(embedded_model_dir())
    examples, report = alpaca_like_examples(tok, args.examples, args.max_length, args.seed)
    model = tiny_model("llama", tok, seed=args.seed, hidden=args.hidden, layers=args.layers, heads=4)
    prepare_for_packing(model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    lengths = sorted(len(e["input_ids"]) for e in examples)
    res = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(), "model": f"random LLaMA {args.layers}x{args.hidden}, vocab {len(tok)}",
        "data": "bench_instructions.jsonl text cut to Alpaca-shaped lengths (Alpaca 52K not available offline)",
        "examples": len(examples), "median_tokens": lengths[len(lengths) // 2], "max_tokens": lengths[-1],
        "runs": [compare(model, opt, tok, examples, int(bs), args.max_length) for bs in args.batch_sizes.split(",")],
    }
    print(json.dumps(res, indent=1))
    for r in res["runs"]:
        print(f"batch {r['batch_size']:>3}: packing {r['ratio']:.2f}x useful tokens/s "
              f"({r['packed_useful_tokens_per_s']:.0f} vs {r['padded_useful_tokens_per_s']:.0f}); "
              f"padding leaves {r['padded_useful_share']:.0%} of positions useful")
    return res


if __name__ == "__main__":
    main()

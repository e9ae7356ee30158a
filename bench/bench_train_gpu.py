"""GPU benchmark: tokens/s/GPU and MFU of a training step, padding-free packing vs padding.

Any CUDA device, no download: a random-initialised LLaMA-architecture model of ~1.1B
parameters (hidden 2048, 16 layers, vocab 32000) in bf16, AdamW, the same Alpaca-shaped
examples as bench/bench_packing.py, the same batches in both layouts, alternating.

    python bench/bench_train_gpu.py                        # ~3-5 min on one A100/H100
    python bench/bench_train_gpu.py --attn flash_attention_2 --batch-size 16
    python bench/bench_train_gpu.py --record               # + a row in docs/benchmarks.md and
                                                           #   lib/data/throughput.yaml (bench:)

MFU = model FLOPs (6*N*tokens + 12*layers*hidden*sum(len^2), useful tokens only) / time /
the device's dense bf16 peak (lib/train/metrics.py). Packing is one row per batch with
cu_seq_lens: flash_attention_2 runs its varlen kernel; with sdpa, lib.train.packing swaps in
sdpa_varlen, which on CUDA in bf16 calls torch's flash varlen kernel
(torch.nn.attention.varlen.varlen_attn) with no host synchronisation per layer; the kernel it
took is printed. Peak memory is torch.cuda.max_memory_allocated per layout (reset before
each of its steps).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def build_model(args, vocab: int):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(hidden_size=args.hidden, intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                      num_attention_heads=args.heads, num_key_value_heads=args.heads, vocab_size=vocab,
                      max_position_embeddings=4096, tie_word_embeddings=False, use_cache=False)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation=args.attn)
    return model


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--intermediate", type=int, default=5632)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--attn", default="auto", help="sdpa | flash_attention_2 | auto (flash if installed)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--record", action="store_true",
                   help="append the result to docs/benchmarks.md and lib/data/throughput.yaml (bench:)")
    args = p.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench_train_gpu needs a CUDA device; for CPU use bench/bench_packing.py")
    if args.attn == "auto":
        import importlib.util

        args.attn = "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa"
    from transformers import AutoTokenizer

    from bench_packing import alpaca_like_examples
    from lib.core.model import embedded_model_dir
    from lib.train.metrics import PEAK_BF16, device_peak_flops, non_embedding_params, train_flops
    from lib.train.packing import make_collator, prepare_for_packing, varlen_kernel

    tok = AutoTokenizer.from_pretrained(embedded_model_dir())
    examples, _ = alpaca_like_examples(tok, args.examples, args.max_length, seed=0)
    vocab = 32000
    for e in examples:  # the embedded tokenizer's ids, folded into a LLaMA-sized vocabulary
        e["input_ids"] = [i % vocab for i in e["input_ids"]]
        e["labels"] = [lab if lab < 0 else lab % vocab for lab in e["labels"]]
    model = build_model(args, vocab)
    model.train()
    n_params = non_embedding_params(model)
    total_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    peak, peak_src = device_peak_flops()
    collators = {"padded": make_collator(tok, packing=False),
                 "packed": make_collator(tok, packing=True, layout=prepare_for_packing(model),
                                         row_tokens=args.max_length)}
    batches = [examples[i:i + args.batch_size] for i in range(0, len(examples) - args.batch_size + 1, args.batch_size)]

    def step(batch):
        batch = {k: v.cuda(non_blocking=True) if hasattr(v, "cuda") else v for k, v in batch.items()}
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for b in batches[: args.warmup]:
        for c in collators.values():
            step(c(b))
    torch.cuda.synchronize()
    stats = {m: {"seconds": 0.0, "positions": 0, "peak_bytes": 0} for m in collators}
    useful = sq = 0
    for i, b in enumerate(batches):
        lens = [len(e["input_ids"]) for e in b]
        useful += sum(lens)
        sq += sum(n * n for n in lens)
        for mode in (("padded", "packed") if i % 2 == 0 else ("packed", "padded")):
            batch = collators[mode](b)
            stats[mode]["positions"] += batch["input_ids"].numel()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            step(batch)
            torch.cuda.synchronize()
            stats[mode]["seconds"] += time.perf_counter() - t0
            stats[mode]["peak_bytes"] = max(stats[mode]["peak_bytes"], torch.cuda.max_memory_allocated())
    flops = train_flops(n_params, args.layers, args.hidden, useful, sq)
    res = {
        "date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name(), "peak_flops": peak,
        "peak_source": peak_src, "attn": args.attn, "params": total_params, "non_embedding_params": n_params,
        "batch_size": args.batch_size, "examples": len(batches) * args.batch_size, "torch": torch.__version__,
        "packed_kernel": (varlen_kernel(torch.zeros(1, 1, 1, args.hidden // args.heads, device="cuda",
                                                dtype=torch.bfloat16), 0.0)
                          if args.attn == "sdpa" else args.attn),
        "command": "python bench/bench_train_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    for mode, s in stats.items():
        res[mode] = {"useful_tokens_per_s_per_gpu": round(useful / s["seconds"]),
                     "useful_share": round(useful / s["positions"], 3),
                     "mfu": round(flops / s["seconds"] / peak, 4) if peak else None,
                     "peak_memory_gib": round(s["peak_bytes"] / 2**30, 2)}
    res["ratio_packed_over_padded"] = round(stats["padded"]["seconds"] / stats["packed"]["seconds"], 2)
    print(json.dumps(res, indent=1))
    if not any(k in res["device"] for k in PEAK_BF16):
        print("note: unknown device peak; MFU left empty", file=sys.stderr)
    if args.record:
        record(res)
    return res


def accelerator_name(device: str) -> str:
    """torch's device name in SkyPilot's accelerator vocabulary ('NVIDIA A100-SXM4-80GB' -> 'A100-80GB')."""
    for key in ("H200", "H100", "A100", "L40S", "L4", "A10G", "V100", "T4"):
        if key in device:
            return key + ("-80GB" if key == "A100" and "80GB" in device else "")
    return device


def record(res: dict) -> None:
    """Append the result: a row of docs/benchmarks.md's GPU table and a `bench:` line of
    lib/data/throughput.yaml (appended, never rewritten: earlier measurements stay)."""
    packed, padded = res["packed"], res["padded"]
    row = (f"| {res['date']} | {res['device']} | {res['attn']} ({res['packed_kernel']}) | {res['params'] / 1e9:.2f}B "
           f"| {res['batch_size']} | {padded['useful_tokens_per_s_per_gpu']:,} / {packed['useful_tokens_per_s_per_gpu']:,} "
           f"| {padded['mfu']} / {packed['mfu']} | {padded['peak_memory_gib']} / {packed['peak_memory_gib']} "
           f"| **{res['ratio_packed_over_padded']}x** | `{res['command']}` |\n")
    with open(REPO / "docs" / "benchmarks.md", "a", encoding="utf-8") as f:
        f.write(row)
    entry = {"date": res["date"], "device": res["device"], "accelerator": accelerator_name(res["device"]),
             "model": f"random LLaMA {res['params'] / 1e9:.2f}B", "attn": f"{res['attn']} ({res['packed_kernel']})",
             "tokens_per_s_per_gpu": packed["useful_tokens_per_s_per_gpu"], "mfu": packed["mfu"],
             "peak_memory_gib": packed["peak_memory_gib"], "command": res["command"]}
    with open(REPO / "lib" / "data" / "throughput.yaml", "a", encoding="utf-8") as f:
        f.write("  - " + json.dumps(entry) + "\n")  # JSON is YAML: one flow mapping per line
    print("recorded in docs/benchmarks.md and lib/data/throughput.yaml (bench:)")


if __name__ == "__main__":
    main()

"""GPU benchmark: tokens/s/GPU and MFU of a training step, padding-free packing vs padding.

Any CUDA device, no download: a random-initialised LLaMA-architecture model of ~1.1B
parameters (hidden 2048, 16 layers, vocab 32000) in bf16, AdamW, the same Alpaca-shaped
examples as bench/bench_packing.py, the same batches in both layouts, alternating.

    python bench/bench_train_gpu.py                        # ~3-5 min on one A100/H100
    python bench/bench_train_gpu.py --attn flash_attention_2 --batch-size 16

MFU = model FLOPs (6*N*tokens + 12*layers*hidden*sum(len^2), useful tokens only) / time /
the device's dense bf16 peak (lib/train/metrics.py). Packing is one row per batch with
cu_seq_lens: flash_attention_2 runs its varlen kernel; with sdpa, lib.train.packing swaps in
sdpa_varlen (one SDPA call per example; no mask, no cross-example work).
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
    args = p.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench_train_gpu needs a CUDA device; for CPU use bench/bench_packing.py")
    if args.attn == "auto":
        import importlib.util

        args.attn = "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa"
    from transformers import AutoTokenizer

    from bench_packing import alpaca_like_examples
    from lib.model import embedded_model_dir
    from lib.train.metrics import PEAK_BF16, device_peak_flops, non_embedding_params, train_flops
    from lib.train.packing import make_collator, prepare_for_packing

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
    stats = {m: {"seconds": 0.0, "positions": 0} for m in collators}
    useful = sq = 0
    for i, b in enumerate(batches):
        lens = [len(e["input_ids"]) for e in b]
        useful += sum(lens)
        sq += sum(n * n for n in lens)
        for mode in (("padded", "packed") if i % 2 == 0 else ("packed", "padded")):
            batch = collators[mode](b)
            stats[mode]["positions"] += batch["input_ids"].numel()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            step(batch)
            torch.cuda.synchronize()
            stats[mode]["seconds"] += time.perf_counter() - t0
    flops = train_flops(n_params, args.layers, args.hidden, useful, sq)
    res = {
        "date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name(), "peak_flops": peak,
        "peak_source": peak_src, "attn": args.attn, "params": total_params, "non_embedding_params": n_params,
        "batch_size": args.batch_size, "examples": len(batches) * args.batch_size, "torch": torch.__version__,
        "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1),
    }
    for mode, s in stats.items():
        res[mode] = {"useful_tokens_per_s_per_gpu": round(useful / s["seconds"]),
                     "useful_share": round(useful / s["positions"], 3),
                     "mfu": round(flops / s["seconds"] / peak, 4) if peak else None}
    res["ratio_packed_over_padded"] = round(stats["padded"]["seconds"] / stats["packed"]["seconds"], 2)
    print(json.dumps(res, indent=1))
    if not any(k in res["device"] for k in PEAK_BF16):
        print("note: unknown device peak; MFU left empty", file=sys.stderr)
    return res


if __name__ == "__main__":
    main()

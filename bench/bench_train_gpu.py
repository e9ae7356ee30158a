"""GPU benchmark: a real 03_train of a ~1B LLaMA-shaped model (tokens/s/GPU, MFU, checkpoint
write and model-load rates), then the training step's kernels, padding-free packing vs padding.

Any CUDA device, no download, one script, under 10 minutes on one A100/H100:

    python bench/bench_train_gpu.py --record    # both parts; rows in docs/benchmarks.md and
                                                #   lib/data/throughput.yaml (bench:), dated, with the device
    python bench/bench_train_gpu.py --skip-kernels --train-steps 100   # the 03_train part only

Part 1, 03_train (lib.train.sft.train, what the notebook runs): a random-initialised LLaMA
config of ~1.0B parameters (hidden 2048, 16 layers, intermediate 5632, the embedded
tokenizer's 49,152-token vocabulary) saved as a checkpoint, fine-tuned with recipe alpaca_7b's
settings (bf16, packing, sdpa, AdamW) on Alpaca-shaped records for --train-steps steps, a
checkpoint every --save-steps. Its train/metrics.json gives the measured row: real tokens/s/GPU,
MFU (lib/budget/throughput.py's FLOP rule and datasheet peak, as the launch plan), the
checkpoint write rate (bytes of each checkpoint directory / seconds of its save) and the
model-load rate. The overheads of the launch plan (lib/launch/overheads.py) use the newest
bench row of the same accelerator when no calibrated run has one.

Part 2, kernels: the same model in bf16, AdamW, the same Alpaca-shaped examples as
bench/bench_packing.py, the same batches in both layouts, alternating.
MFU = flops_per_token (lib/budget/throughput.py, useful tokens only) x tokens / time /
the device's dense bf16 peak. Packing is one row per batch with
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
    p.add_argument("--train-steps", type=int, default=150, help="03_train optimizer steps (part 1)")
    p.add_argument("--save-steps", type=int, default=50, help="03_train checkpoint interval (part 1)")
    p.add_argument("--skip-kernels", action="store_true", help="part 1 only")
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
    from lib.budget.throughput import config_shape, flops_per_token
    from lib.core.model import embedded_model_dir
    from lib.train.metrics import device_peak_flops
    from lib.train.packing import make_collator, prepare_for_packing, varlen_kernel

    command = "python bench/bench_train_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    trained = train_run(args, command)
    if args.skip_kernels:
        if args.record:
            record(None, trained)
        return {"train": trained}
    tok = AutoTokenizer.from_pretrained(embedded_model_dir())
    examples, _ = alpaca_like_examples(tok, args.examples, args.max_length, seed=0)
    vocab = 32000
    for e in examples:  # the embedded tokenizer's ids, folded into a LLaMA-sized vocabulary
        e["input_ids"] = [i % vocab for i in e["input_ids"]]
        e["labels"] = [lab if lab < 0 else lab % vocab for lab in e["labels"]]
    model = build_model(args, vocab)
    model.train()
    shape = config_shape(model.config, "the benchmark's LLaMA config")
    total_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    peak, peak_src, _ = device_peak_flops()
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
    flops = flops_per_token(shape, "full", sq / useful).model * useful
    res = {
        "date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name(), "peak_flops": peak,
        "peak_source": peak_src, "attn": args.attn, "params": total_params,
        "batch_size": args.batch_size, "examples": len(batches) * args.batch_size, "torch": torch.__version__,
        "packed_kernel": (varlen_kernel(torch.zeros(1, 1, 1, args.hidden // args.heads, device="cuda",
                                                dtype=torch.bfloat16), 0.0)
                          if args.attn == "sdpa" else args.attn),
        "command": command,
    }
    for mode, s in stats.items():
        res[mode] = {"useful_tokens_per_s_per_gpu": round(useful / s["seconds"]),
                     "useful_share": round(useful / s["positions"], 3),
                     "mfu": round(flops / s["seconds"] / peak, 4) if peak else None,
                     "peak_memory_gib": round(s["peak_bytes"] / 2**30, 2)}
    res["ratio_packed_over_padded"] = round(stats["padded"]["seconds"] / stats["packed"]["seconds"], 2)
    print(json.dumps(res, indent=1))
    if not peak:
        print("note: unknown device peak; MFU left empty", file=sys.stderr)
    if args.record:
        record(res, trained)
    return {"train": trained, "kernels": res}


def train_run(args, command: str) -> dict:
    """Part 1: lib.train.sft.train on a saved random ~1B LLaMA checkpoint; the measured row from its metrics."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from bench_packing import alpaca_like_records
    from lib.budget.throughput import device_accelerator
    from lib.core.model import embedded_model_dir
    from lib.train.sft import TrainConfig, train

    root = Path(tempfile.mkdtemp(prefix="bench-train-"))
    tok = AutoTokenizer.from_pretrained(embedded_model_dir())
    cfg = LlamaConfig(hidden_size=args.hidden, intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                      num_attention_heads=args.heads, num_key_value_heads=args.heads, vocab_size=len(tok),
                      max_position_embeddings=4096, tie_word_embeddings=False, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    examples = args.train_steps * 16  # recipe alpaca_7b's packed micro-batch, one GPU, no accumulation
    with open(root / "train.jsonl", "w", encoding="utf-8") as f:
        for r in alpaca_like_records(examples, seed=0):
            f.write(json.dumps(r) + "\n")
    t0 = time.time()
    m = train(TrainConfig(recipe="alpaca_7b", data=str(root / "train.jsonl"), model=str(root / "base"),
                          output_dir=str(root / "run" / "model"), run_dir=str(root / "run"), hourly_usd=0.0,
                          max_steps=args.train_steps, save_steps=args.save_steps, logging_steps=5))
    device = torch.cuda.get_device_name()
    ck, load = m.get("checkpoint_write") or {}, m.get("model_load") or {}
    return {"date": time.strftime("%Y-%m-%d"), "device": device, "accelerator": device_accelerator(device) or device,
            "model": f"random LLaMA {m['params'] / 1e9:.2f}B (hidden {args.hidden}, {args.layers} layers)",
            "recipe_settings": "alpaca_7b (bf16, packing, sdpa), 1 GPU", "steps": m["optimizer_steps"],
            "trained_tokens": m["trained_tokens"], "tokens_per_s_per_gpu": round(m["tokens_per_s_per_gpu"] or 0),
            "mfu": round(m["mfu"], 4) if m.get("mfu") else None, "peak_source": m["peak_source"],
            "checkpoint_write_bytes_per_s": ck.get("bytes_per_s"), "checkpoint_bytes": ck.get("bytes"),
            "checkpoint_saves": ck.get("saves"), "model_load_bytes_per_s": load.get("bytes_per_s"),
            "seconds": round(time.time() - t0, 1), "command": command}


# docs/benchmarks.md's two GPU tables, by the start of their header lines
TABLES = ("| date | device | run | steps |", "| date | device | attention (packed kernel) |")


def insert_row(text: str, header: str, row: str) -> str:
    """`text` with `row` appended to the markdown table whose header line starts with `header`."""
    lines = text.splitlines(keepends=True)
    i = next(k for k, line in enumerate(lines) if line.startswith(header)) + 1
    while i < len(lines) and lines[i].startswith("|"):
        i += 1
    return "".join(lines[:i] + [row] + lines[i:])


def record(res: dict | None, trained: dict) -> None:
    """Append the results: rows of docs/benchmarks.md's GPU tables and `bench:` lines of
    lib/data/throughput.yaml (appended, never rewritten: earlier measurements stay)."""
    t = trained
    rows = [f"| {t['date']} | {t['device']} | 03_train, {t['model']} | {t['steps']} | {t['tokens_per_s_per_gpu']:,} | "
            f"{t['mfu']} | {(t['checkpoint_write_bytes_per_s'] or 0) / 1e6:,.0f} MB/s ({t['checkpoint_saves']} saves) | "
            f"{(t['model_load_bytes_per_s'] or 0) / 1e6:,.0f} MB/s | `{t['command']}` |\n"]
    entries = [{k: t[k] for k in ("date", "device", "accelerator", "model", "tokens_per_s_per_gpu", "mfu",
                                  "checkpoint_write_bytes_per_s", "model_load_bytes_per_s", "command")}]
    if res is not None:
        packed, padded = res["packed"], res["padded"]
        rows.append(f"| {res['date']} | {res['device']} | kernels, {res['attn']} ({res['packed_kernel']}) | "
                    f"{res['params'] / 1e9:.2f}B, micro-batch {res['batch_size']} | {padded['useful_tokens_per_s_per_gpu']:,}"
                    f" / {packed['useful_tokens_per_s_per_gpu']:,} (padded / packed) | {padded['mfu']} / {packed['mfu']} | "
                    f"peak {padded['peak_memory_gib']} / {packed['peak_memory_gib']} GiB | packed / padded "
                    f"**{res['ratio_packed_over_padded']}x** | `{res['command']}` |\n")
        entries.append({"date": res["date"], "device": res["device"], "accelerator": t["accelerator"],
                        "model": f"random LLaMA {res['params'] / 1e9:.2f}B, kernels only",
                        "attn": f"{res['attn']} ({res['packed_kernel']})",
                        "tokens_per_s_per_gpu": packed["useful_tokens_per_s_per_gpu"], "mfu": packed["mfu"],
                        "peak_memory_gib": packed["peak_memory_gib"], "command": res["command"]})
    doc = REPO / "docs" / "benchmarks.md"
    text = doc.read_text(encoding="utf-8")
    for header, row in zip(TABLES, rows):
        text = insert_row(text, header, row)
    doc.write_text(text, encoding="utf-8")
    with open(REPO / "lib" / "data" / "throughput.yaml", "a", encoding="utf-8") as f:
        f.writelines("  - " + json.dumps(e) + "\n" for e in entries)  # JSON is YAML: one flow mapping per line
    print("recorded in docs/benchmarks.md and lib/data/throughput.yaml (bench:)")


if __name__ == "__main__":
    main()

"""CPU benchmark: the laptop export (GGUF F16 / Q4_K_M via llama.cpp) against the Hugging Face model.

One run, same machine, same cores (`--threads`, default 2), measured side by side:

* file size, peak RAM (max RSS of a fresh process that loads the model and generates), and
  greedy decoding tokens/s for a fixed prompt, for the HF checkpoint (fp32, transformers
  generate), the 16-bit GGUF and the Q4_K_M GGUF (llama-cpp-python, argmax decoding);
* parity: top-1 next-token agreement F16 vs HF on the same ids (prompt set = the first
  `--prompts` seed tasks with HF's greedy continuation), how many greedy continuations are
  equal, and held-out perplexity of F16 and Q4_K_M (last 16 seed tasks with their answers);
* `--server`: the laptop teacher question (issue 14 part 4): completion tokens/s of the
  embedded model behind `transformers serve` vs llama.cpp's server (F16 and Q4_K_M), at the
  local profile's generation settings (max_tokens 192, temperature 0.7), same prompt,
  `--requests` requests each, one at a time as 01_generate sends them.

    .venv/bin/python bench/bench_export.py                  # the embedded SmolLM2-135M
    .venv/bin/python bench/bench_export.py --server --record   # + servers, append to docs/benchmarks.md
    .venv/bin/python bench/bench_export.py --run runs/<id>  # any trained run
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

PROMPT = "Give three tips for staying healthy."

# Peak RSS is the child's VmHWM: the high-water mark of its own address space. Not
# getrusage's ru_maxrss, which Linux carries over fork + exec, so a child of this (large)
# process would report the parent's peak instead of its own.
_PEAK = """
def peak_rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
"""

_HF_CHILD = _PEAK + """
import json, sys, time, torch
torch.set_num_threads({threads})
from transformers import AutoModelForCausalLM
ids = json.loads(sys.argv[1])
m = AutoModelForCausalLM.from_pretrained({path!r}, dtype=torch.float32).eval()
with torch.inference_mode():
    m.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False, eos_token_id=-1)
    t = time.perf_counter()
    out = m.generate(torch.tensor([ids]), max_new_tokens={n}, min_new_tokens={n}, do_sample=False, eos_token_id=-1, pad_token_id=0)
    dt = time.perf_counter() - t
print(json.dumps({{"tok_s": (out.shape[1] - len(ids)) / dt, "rss": peak_rss()}}))
"""

_GGUF_CHILD = _PEAK + """
import json, sys, time
from llama_cpp import Llama
ids = json.loads(sys.argv[1])
llm = Llama(model_path={path!r}, n_ctx=1024, n_threads={threads}, n_threads_batch={threads}, verbose=False)
for _ in llm.generate(ids[:4], top_k=1, temp=0.0):
    break
t = time.perf_counter()
n = 0
for _ in llm.generate(ids, top_k=1, temp=0.0, reset=True):  # greedy; EOS does not stop generate()
    n += 1
    if n >= {n}:
        break
dt = time.perf_counter() - t
print(json.dumps({{"tok_s": n / dt, "rss": peak_rss()}}))
"""


def _child(code: str, ids: list[int]) -> dict:
    out = subprocess.run([sys.executable, "-c", code, json.dumps(ids)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.suffix == ".safetensors")
    return path.stat().st_size


def bench_files(rm, exp, tok, model, *, threads: int, n_new: int, n_prompts: int, rounds: int) -> dict:
    from lib.serve.export import gguf_logits, greedy_gguf, greedy_hf, load_gguf, perplexity, top1_agreement
    from lib.serve.template import encode
    from test_export import _ask, seed_prompts

    ids = encode(tok, rm.format, [{"role": "user", "content": PROMPT}])
    rows = {"HF fp32": (rm.model_dir, _HF_CHILD)}
    for q, p in exp.files.items():
        rows[f"GGUF {q}"] = (p, _GGUF_CHILD)
    # Rounds: each round runs every row once, so a burst of load elsewhere on the machine falls
    # on all rows alike; the median speed and the largest peak RSS of the rounds are reported.
    runs = {name: [] for name in rows}
    for _ in range(rounds):
        for name, (path, code) in rows.items():
            runs[name].append(_child(code.format(path=str(path), threads=threads, n=n_new), ids))
    res = {}
    for name, (path, _) in rows.items():
        speeds = sorted(m["tok_s"] for m in runs[name])
        res[name] = {"bytes": _size(Path(path)), "rss": max(m["rss"] for m in runs[name]),
                     "tok_s": speeds[len(speeds) // 2]}
        print(f"{name:12s} {res[name]['bytes'] / 2**20:8.1f} MiB  RSS {res[name]['rss'] / 2**20:7.1f} MiB  "
              f"{res[name]['tok_s']:7.1f} tok/s (rounds: {', '.join(f'{x:.1f}' for x in speeds)})", flush=True)
    f16 = load_gguf(exp.gguf("F16"), threads=threads)
    eos = [tok.eos_token_id]
    same, seqs = 0, []
    for conv in seed_prompts(n_prompts):
        p = encode(tok, rm.format, conv)
        a = greedy_hf(model, p, 24, eos)
        same += a == greedy_gguf(f16, p, 24, eos)
        seqs.append(p + a)
    agree, total = top1_agreement(model, f16, seqs)
    rows_ = [json.loads(x) for x in (REPO / "lib/data/seed_tasks.jsonl").read_text().splitlines()[-16:]]
    held = [encode(tok, rm.format, [{"role": "user", "content": _ask(r)}]) +
            tok(r["instances"][0]["output"] + tok.eos_token, add_special_tokens=False)["input_ids"] for r in rows_]
    ppl = {q: perplexity(lambda x, m=load_gguf(exp.gguf(q), threads=threads): gguf_logits(m, x), held)
           for q in exp.files}
    from lib.serve.export import hf_logits

    ppl["HF fp32"] = perplexity(lambda x: hf_logits(model, x), held)
    parity = {"agree": agree, "total": total, "greedy_same": same, "prompts": n_prompts, "ppl": ppl}
    print(json.dumps(parity, indent=1), flush=True)
    return {"files": res, "parity": parity}


def bench_servers(rm, exp, *, threads: int, requests: int, shipped: Path | None, max_tokens: int = 192,
                  temperature: float = 0.7) -> dict:
    """All servers are up at once and take the requests in turn (request i goes to every
    server before request i+1 goes to any), so load from elsewhere falls on all of them alike.
    `shipped` is the GGUF the embedded model comes as (Q4_1, the weights transformers serve
    de-quantises): what llama.cpp would serve as the laptop teacher without any export."""
    from contextlib import ExitStack

    from lib.core.client import Endpoint, chat, make_client
    from lib.core.server import LocalServer
    from lib.serve.template import serving_checkpoint

    targets = {"transformers serve": (serving_checkpoint(rm), "transformers")}
    if shipped is not None:
        targets["llama.cpp Q4_1 (as shipped)"] = (shipped, "llama.cpp")
    for q, p in exp.files.items():
        targets[f"llama.cpp {q}"] = (p, "llama.cpp")
    out = {name: {"tokens": 0, "seconds": 0.0} for name in targets}
    with ExitStack() as stack:
        eps = {}
        for name, (path, backend) in targets.items():
            srv = stack.enter_context(LocalServer(path, backend=backend, threads=threads))
            ep = Endpoint(base_url=srv.base_url, model=srv.model)
            eps[name] = (make_client(ep, timeout=600), ep)
            chat(*eps[name], [{"role": "user", "content": "Hi"}], max_tokens=4)  # warm-up
        for i in range(requests):
            for name, (client, ep) in eps.items():
                t = time.perf_counter()
                _, resp = chat(client, ep, [{"role": "user", "content": f"{PROMPT} ({i + 1})"}],
                               max_tokens=max_tokens, temperature=temperature, seed=i)
                out[name]["seconds"] += time.perf_counter() - t
                out[name]["tokens"] += resp.usage.completion_tokens
    for name, v in out.items():
        v["tok_s"] = v["tokens"] / v["seconds"]
        print(f"{name:28s} {v['tokens']:5d} completion tokens in {v['seconds']:6.1f} s = {v['tok_s']:6.1f} tok/s",
              flush=True)
    return out


def markdown(args, files: dict, servers: dict | None, machine: str, took: float, load0: float) -> str:
    r = files["files"]
    hf = r["HF fp32"]
    lines = [
        "", "", "## Laptop export: GGUF F16 / Q4_K_M vs the Hugging Face model (bench/bench_export.py)", "",
        f"{time.strftime('%Y-%m-%d')}, {machine}; load average {load0:.1f} at the start and "
        f"{os.getloadavg()[0]:.1f} at the end (other work on the machine slows every row alike: the file rows "
        f"run in {args.rounds} rounds of one each, median speed; the servers are up together and take the "
        f"requests in turn), {args.threads} threads everywhere.",
        f"Command: `.venv/bin/python bench/bench_export.py{' --server' if servers else ''} --record` ({took / 60:.0f} min).",
        "", "Model: the embedded SmolLM2-135M-Instruct (its own chat template). Greedy decoding of "
        f"{args.new_tokens} tokens after one prompt; RAM = peak RSS of a fresh process that loads the model and "
        "decodes (its VmHWM).", "",
        "| model | file | RAM (peak RSS) | tokens/s | size vs HF | RAM vs HF | speed vs HF |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, v in r.items():
        lines.append(f"| {name} | {v['bytes'] / 2**20:,.1f} MiB | {v['rss'] / 2**20:,.0f} MiB | {v['tok_s']:.1f} | "
                     f"{v['bytes'] / hf['bytes']:.2f}x | {v['rss'] / hf['rss']:.2f}x | {v['tok_s'] / hf['tok_s']:.2f}x |")
    p = files["parity"]
    ppl = p["ppl"]
    lines += ["", f"Parity: F16 top-1 next-token agreement with HF **{p['agree']}/{p['total']} "
              f"({100 * p['agree'] / p['total']:.2f}%)** on the same ids; greedy continuations (24 tokens) equal on "
              f"{p['greedy_same']}/{p['prompts']} prompts. Held-out perplexity (16 seed tasks with answers): "
              + ", ".join(f"{k} {v:.3f}" for k, v in ppl.items())
              + (f"; Q4_K_M is **{ppl['Q4_K_M'] / ppl['F16']:.3f}x** F16 (tests require <= 1.25x)."
                 if "Q4_K_M" in ppl and "F16" in ppl else ".")]
    if servers:
        base = servers["transformers serve"]["tok_s"]
        lines += ["", f"Laptop teacher (issue 14 part 4): the embedded model behind each server, {args.requests} "
                  "requests to each, one at a time, max_tokens 192, temperature 0.7 (the local profile's 01_generate "
                  "settings), completion tokens/s:", "",
                  "| server | completion tokens | seconds | tokens/s | vs transformers serve |", "|---|---:|---:|---:|---:|"]
        for name, v in servers.items():
            lines.append(f"| {name} | {v['tokens']} | {v['seconds']:.1f} | {v['tok_s']:.1f} | {v['tok_s'] / base:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="", help="runs/<id>; default: the embedded model as a run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--server", action="store_true")
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the file rows (median speed)")
    ap.add_argument("--record", action="store_true", help="append the section to docs/benchmarks.md")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lib.serve.export import export_run
    from lib.core.model import embedded_model_dir, gguf_path
    from lib.serve.run_model import load_run_model
    from test_export import embedded_run

    torch.set_num_threads(args.threads)
    t0 = time.time()
    run = Path(args.run) if args.run else embedded_run(Path(tempfile.mkdtemp(prefix="bench-export-")), embedded_model_dir())
    rm = load_run_model(run)
    exp = export_run(rm, threads=args.threads)
    tok = AutoTokenizer.from_pretrained(rm.model_dir)
    model = AutoModelForCausalLM.from_pretrained(rm.model_dir, dtype=torch.float32).eval()
    load0 = os.getloadavg()[0]
    files = bench_files(rm, exp, tok, model, threads=args.threads, n_new=args.new_tokens, n_prompts=args.prompts,
                        rounds=args.rounds)
    shipped = None if args.run else gguf_path()
    servers = bench_servers(rm, exp, threads=args.threads, requests=args.requests, shipped=shipped) \
        if args.server else None
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    machine = (f"`{platform.node()}`: {os.cpu_count()} cores ({cpu}), "
               f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, no GPU, "
               f"Python {platform.python_version()}, llama-cpp-python {__import__('lib.serve.export').export.llama_cpp_version()}")
    md = markdown(args, files, servers, machine, time.time() - t0, load0)
    print(md)
    if args.record:
        with open(REPO / "docs" / "benchmarks.md", "a") as f:
            f.write(md)


if __name__ == "__main__":
    main()

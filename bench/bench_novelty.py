"""Novelty filter benchmark: Alpaca's brute-force rouge_score rule vs lib.generate.novelty.

    python bench/bench_novelty.py                   # 1,000 brute force vs 1,000 and 52,000 fast
    python bench/bench_novelty.py --brute 300 --n 10000   # quicker
    python bench/bench_novelty.py --natural --sizes 100000 250000 1000000   # BELLE scale

--natural: recombined real phrases (bench/novelty_data.py says how they are built), most of
them novel; each size runs in a fresh process (so its peak memory is its own), after a
brute-force check of the first --brute candidates; prints time, keep rate, peak memory,
work per query and the growth exponent between consecutive sizes.

Data: the 10,619 real instructions in ../shared/data/bench_instructions.jsonl, plus copies
with light word edits (drop / replace / swap / insert one or two words) sampled up to
52,000: the full Alpaca set is not available offline, and edited copies are exactly the
near-duplicates a novelty filter must catch. The pool starts with the 175 official seed
tasks, as in Alpaca. Brute force = rouge_score's `_score_lcs` against every pool member,
one process (Alpaca maps the same function over a multiprocessing Pool per candidate,
which on 2 cores can at best halve this and in practice adds pool start-up per candidate).
Both run in this process, on this machine, one after the other; the decisions on the
common prefix must be identical or the script exits non-zero.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from bench import novelty_data  # noqa: E402
from bench.novelty_data import light_edit, natural_candidates, seed_pool  # noqa: E402
from lib.core.text import tokens  # noqa: E402
from lib.generate.novelty import NoveltyFilter  # noqa: E402  (imported before any clock starts)
from rouge_score import rouge_scorer  # noqa: E402


def build_set(base: list[str], n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = list(base)
    while len(out) < n:
        out.append(" ".join(light_edit(rng.choice(base).split(), rng)))
    rng.shuffle(out)
    return out[:n]


def brute_force(seeds: list[str], cands: list[str], tokenize=None) -> list[bool]:
    """Alpaca's loop: rouge_score's `_score_lcs` against every seed and kept text, drop if > 0.7.
    tokenize: rouge_score's own tokenizer by default (the novelty rule's tokens for --natural)."""
    tokenize = tokenize or rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)._tokenizer.tokenize
    pool = [tokenize(s) for s in seeds]
    out = []
    for c in cands:
        toks = tokenize(c)
        best = max((rouge_scorer._score_lcs(toks, p).fmeasure for p in pool), default=0.0)
        keep = not best > 0.7
        out.append(keep)
        if keep:
            pool.append(toks)
    return out


def fast(seeds: list[str], cands: list[str]):
    f = NoveltyFilter()
    f.extend(seeds)
    return f.add_many(cands), f.stats


def peak_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def natural_run(n: int, seed: int) -> dict:
    """One size, in this (fresh) process: the candidates are built before the clock starts."""
    cands = natural_candidates(n, seed)
    f = NoveltyFilter()
    f.extend(seed_pool())
    f.add_many(cands[:2000])  # compiles/loads the kernels; counted below, not excluded
    f = NoveltyFilter()
    f.extend(seed_pool())
    wall, cpu = time.perf_counter(), time.process_time()
    kept = sum(f.add_many(cands))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"n": n, "wall": wall, "cpu": cpu, "kept": kept, "peak_mib": peak_mib(), **f.stats}


def machine() -> str:
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return f"{os.cpu_count()} cores ({model}), python {platform.python_version()}"


def natural(args) -> int:
    print("data: " + novelty_data.DESCRIPTION)
    print(f"machine: {machine()}; load average at start {os.getloadavg()[0]:.2f}")
    cands = natural_candidates(args.brute, args.seed)
    want = brute_force(seed_pool(), cands, tokenize=tokens)
    got = fast(seed_pool(), cands)[0]
    print(f"identical decisions to brute-force rouge_score on the first {args.brute:,}: {want == got}"
          f" (kept {sum(want):,})")
    rows = []
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--seed", str(args.seed)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{n:>9,}  wall {r['wall']:7.1f} s  cpu {r['cpu']:7.1f} s  kept {r['kept'] / n:6.1%}  "
              f"peak {r['peak_mib']:7.0f} MiB  per query: {r['entries'] / n:7.0f} entries read, "
              f"{r['candidates'] / n:6.0f} texts touched, {r['bounded'] / n:5.2f} past the count bound, "
              f"{r['bitmap'] / n:5.2f} past the bitmap bound, {r['lcs'] / n:5.2f} exact LCS  "
              f"(load {os.getloadavg()[0]:.2f})", flush=True)
    for a, b in zip(rows, rows[1:]):
        k = math.log(b["n"] / a["n"])
        print(f"growth exponent {a['n']:,} -> {b['n']:,}: wall {math.log(b['wall'] / a['wall']) / k:.2f}, "
              f"cpu {math.log(b['cpu'] / a['cpu']) / k:.2f}")
    return 0 if want == got else 1


def legacy(args) -> int:
    base = [json.loads(l)["instruction"] for l in open(SHARED / "bench_instructions.jsonl", encoding="utf-8")]
    seeds = [json.loads(l)["instruction"] for l in open(SHARED / "selfinstruct_seed_tasks.jsonl", encoding="utf-8")]
    cands = build_set(base, args.n)
    print(f"data: {len(base):,} real instructions (bench_instructions.jsonl) + light word edits -> {len(cands):,} "
          f"candidates (synthetic near-duplicates; the Alpaca 52K is not available offline); pool starts with "
          f"{len(seeds)} seed tasks")
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")

    t = time.perf_counter()
    want = brute_force(seeds, cands[: args.brute])
    t_brute = time.perf_counter() - t
    t = time.perf_counter()
    got_small, _ = fast(seeds, cands[: args.brute])
    t_small = time.perf_counter() - t
    t = time.perf_counter()
    got_big, stats = fast(seeds, cands)
    t_big = time.perf_counter() - t

    same = want == got_small == got_big[: args.brute]
    print(f"brute force rouge_score, first {args.brute:,}: {t_brute:8.2f} s  kept {sum(want):,}")
    print(f"fast filter,             first {args.brute:,}: {t_small:8.2f} s  kept {sum(got_small):,}  "
          f"speed-up x{t_brute / t_small:,.0f}")
    print(f"fast filter,            all {len(cands):,}: {t_big:8.2f} s  kept {sum(got_big):,}  "
          f"({stats['candidates'] / len(cands):,.0f} candidates and {stats['lcs'] / len(cands):,.1f} exact LCS per query)")
    print(f"ratio: brute force on {args.brute:,} / fast on {len(cands):,} = {t_brute / t_big:.2f} "
          f"({'faster' if t_big < t_brute else 'SLOWER'})")
    print(f"identical decisions on the common prefix of {args.brute:,}: {same}")
    return 0 if same else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brute", type=int, default=None,
                    help="candidates for the brute force (1,000; 300 with --natural)")
    ap.add_argument("--n", type=int, default=52000, help="candidates for the fast filter's big run")
    ap.add_argument("--natural", action="store_true", help="recombined real phrases at BELLE scale")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100000, 250000, 1000000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one --natural size
    args = ap.parse_args()
    if args.one:
        print(json.dumps(natural_run(args.one, args.seed)))
        return 0
    if args.natural:
        args.brute = 300 if args.brute is None else args.brute
        return natural(args)
    args.brute = 1000 if args.brute is None else args.brute
    return legacy(args)


if __name__ == "__main__":
    raise SystemExit(main())

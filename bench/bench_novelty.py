"""Novelty filter benchmark: Alpaca's brute-force rouge_score rule vs lib.generate.novelty.

    python bench/bench_novelty.py                   # 1,000 brute force vs 1,000 and 52,000 fast
    python bench/bench_novelty.py --brute 300 --n 10000   # quicker

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
import platform
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from lib.generate.novelty import NoveltyFilter  # noqa: E402  (imported before any clock starts)
from rouge_score import rouge_scorer  # noqa: E402

EDIT_WORDS = ["new", "short", "simple", "the", "a", "list", "detailed", "please", "quickly", "three"]


def build_set(base: list[str], n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = list(base)
    while len(out) < n:
        words = rng.choice(base).split()
        for _ in range(rng.choice([1, 1, 2])):
            if len(words) < 3:
                break
            j = rng.randrange(len(words))
            op = rng.random()
            if op < 0.3:
                del words[j]
            elif op < 0.6:
                words[j] = rng.choice(EDIT_WORDS)
            elif op < 0.8:
                k = rng.randrange(len(words))
                words[j], words[k] = words[k], words[j]
            else:
                words.insert(j, rng.choice(EDIT_WORDS))
        out.append(" ".join(words))
    rng.shuffle(out)
    return out[:n]


def brute_force(seeds: list[str], cands: list[str]) -> list[bool]:
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool = [scorer._tokenizer.tokenize(s) for s in seeds]
    out = []
    for c in cands:
        toks = scorer._tokenizer.tokenize(c)
        best = max((rouge_scorer._score_lcs(toks, p).fmeasure for p in pool), default=0.0)
        keep = best <= 0.7
        out.append(keep)
        if keep:
            pool.append(toks)
    return out


def fast(seeds: list[str], cands: list[str]):
    f = NoveltyFilter()
    f.extend(seeds)
    return f.add_many(cands), f.stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brute", type=int, default=1000, help="candidates for the brute force")
    ap.add_argument("--n", type=int, default=52000, help="candidates for the fast filter's big run")
    args = ap.parse_args()
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


if __name__ == "__main__":
    raise SystemExit(main())

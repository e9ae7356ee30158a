"""How fast is cleaning? 100K Alpaca-sized records on this machine, stage by stage.

    .venv/bin/python bench/bench_clean.py                 # 10K and 100K side by side (~5 min on 2 cores)
    .venv/bin/python bench/bench_clean.py --sizes 20000   # quicker

The data is built from ../shared/data/bench_instructions.jsonl (10,619 real GPTeacher
role-play and GSM8K records; the 52K Alpaca set is not available offline): records are
sampled with replacement and ~70% get light word-level edits (a word dropped, swapped with
its neighbour, or a number changed), so the set holds the near-duplicates and exact
duplicates a real generated set has. 2% become planted refusals ("I'm sorry, but I
cannot ..." / "作为一个AI语言模型，...") so the refusal filter has work to do.

What it prints: per size, total seconds, records/s, peak RSS, and each stage's seconds;
then the 100K/10K time ratio measured in the same run (10.0 = linear scaling).
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
SHARED = REPO.parent / "shared" / "data" / "bench_instructions.jsonl"

REFUSALS = ["I'm sorry, but I cannot help with that request.",
            "As an AI language model, I do not have personal opinions on this.",
            "作为一个AI语言模型，我无法回答这个问题。"]


def edit(text: str, rng: random.Random) -> str:
    words = text.split()
    if len(words) < 4:
        return text
    k = rng.randrange(len(words) - 1)
    op = rng.random()
    if op < 0.4:
        del words[k]
    elif op < 0.8:
        words[k], words[k + 1] = words[k + 1], words[k]
    else:
        words[k] = str(rng.randint(2, 99))
    return " ".join(words)


def build(n: int, seed: int = 0) -> list[dict]:
    base = [json.loads(x) for x in SHARED.read_text(encoding="utf-8").split("\n") if x.strip()]  # not splitlines(): U+2028 sits inside strings
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = dict(rng.choice(base))
        r["id"] = f"b{i}"
        u = rng.random()
        if u < 0.02:
            r["output"] = rng.choice(REFUSALS)
        elif u < 0.72:
            r["instruction"] = edit(r["instruction"], rng)
            r["output"] = edit(edit(r["output"], rng), rng)
        out.append(r)
    return out


def run_once(n: int) -> dict:
    import resource

    from lib.clean import CleanConfig, clean_records

    recs = build(n)
    t0 = time.perf_counter()
    res = clean_records(recs, CleanConfig(), fmt="alpaca", progress=True)
    secs = time.perf_counter() - t0
    return {"n": n, "seconds": secs, "kept": len(res.records), "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "stages": {s.name: (round(s.seconds, 1), s.dropped) for s in res.report.stages if s.enabled}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    args = ap.parse_args()
    if not SHARED.exists():
        raise SystemExit(f"{SHARED} is missing: the benchmark reads the shared reference data beside the checkout")
    import psutil

    print(f"# bench_clean {time.strftime('%Y-%m-%d')} on {platform.node()}: {psutil.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}")
    print("# data: sampled from bench_instructions.jsonl with word-level edits (near-duplicates) and 2% refusals")
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        r = run_once(n)
        results.append(r)
        print(f"n={n}: {r['seconds']:.1f} s ({n / r['seconds']:.0f} records/s), kept {r['kept']}, "
              f"peak RSS {r['rss_gb']:.2f} GiB")
        for name, (secs, dropped) in r["stages"].items():
            print(f"    {name:22s} {secs:7.1f} s  dropped {dropped}")
    if len(results) >= 2:
        a, b = results[0], results[-1]
        print(f"time ratio {b['n']}/{a['n']} records: {b['seconds'] / a['seconds']:.1f}x "
              f"for {b['n'] / a['n']:.0f}x the records (same run)")


if __name__ == "__main__":
    main()

"""Exact, fast ROUGE-L novelty filter (the Self-Instruct / Alpaca rule) at BELLE scale.

The rule: a new instruction is kept unless its `rouge_score` ROUGE-L F-measure (default
tokenizer, no stemmer) against some seed or earlier *kept* instruction is > 0.7; Alpaca's
`generate_instruction.py` and Self-Instruct's `bootstrap_instructions.py` both write
`if max(rouge_scores) > 0.7: continue`, so an F of exactly 0.7 is kept. Brute force is
O(N^2) Python DP tables. `NoveltyFilter` makes *the same* keep/drop decisions, greedily in
arrival order, and computes an exact LCS for almost no pair.

Notation: a query of la tokens, a pool text of lb tokens, θ = threshold = num/den exactly,
t = ceil(θ(la+lb)/2). In exact arithmetic rouge's F = 2·LCS/(la+lb), so F >= θ <=> LCS >= t.
A text is a *set of elements* (token, k-th occurrence), so the multiset token overlap of two
texts is the size of their element intersection, and LCS <= overlap (an LCS pairs equal
tokens one to one). Every bound below is an upper bound on the overlap; a pair is pruned only
when that bound is < t, i.e. when the exact rational F bound is strictly below θ. A pruned
pair therefore has exact F < θ, which no float rounding lifts above the threshold (rationals
with denominators of this size stay far from θ), so no decision brute force would make is
changed; exact ties reach step 9.

1. Length: overlap <= min(la, lb), so only lb in [θ·la/(2-θ), (2-θ)·la/θ] can reach t.
2. Order: elements are ranked rarest first by their document frequency in the pool, re-ranked
   whenever the pool doubles; elements newer than the ranking come first, newest first. The
   order is fixed between re-ranks, which is all correctness needs.
3. Prefix filtering (set-similarity joins): if overlap >= t, the first la-t+1 elements of the
   query and the first lb-t+1 of the pool text share an element. Each pool text is indexed
   under its first lb - least(lb) + 1 + δ elements, least(lb) = ceil(θ·lb/(2-θ)) being the
   smallest t any partner can have, so every pair's own prefix plus δ is indexed.
4. Pair prefixes and length partitions (PPJoin): for a pair, only positions i < |Xq| =
   la-t+1+δ of the query and j < |Xb| = lb-t+1+δ of the pool text matter. The static index is
   sorted by (element, length, position), so a probe jumps straight to the lengths allowed at
   query position i and stops each length at its last allowed position.
5. Positional bound: every shared element comes at or after the first one, found at (i, j),
   so overlap <= min(la-i, lb-j).
6. Count bound (ℓ-prefix): c = shared elements inside Xq × Xb, all counted by the scan. Any
   other shared element lies after the end of the extended prefix that ends first in the
   order, so overlap <= c + max(la-|Xq|, lb-|Xb|) = c + t-1-δ: a pair needs c >= δ+1. This is
   what refutes the many pairs that share only a phrase ("Write a short story about").
7. Bitmap bound: each text keeps a 126-bit bitmap with bit h(e) set for each of its elements.
   A bit set in one bitmap but not the other comes from an element only that text has, and
   different bits from different elements, so popcount(bq ^ bb) <= la + lb - 2·overlap: a pair
   needs popcount <= la + lb - 2t. Its two words share a cache line, read beside the text's
   offsets.
8. Bag bound: the exact element overlap of the survivors.
9. The exact LCS (DP) and rouge's float formula 2pr/(p+r), operations in rouge's order, so
   ties at exactly θ round the same way. Keep iff F <= threshold.

Steps 3-9 run compiled (novelty_kernels.py). A probe keeps each pool text's state in the count
bound in 2 bits (untouched, or how many more shared elements it needs), updated without a
branch, so the states of a million texts fit the L2 cache; an entry past the positional bound
only adds to a text already touched (its first shared element came earlier in both texts, so it
never starts one). `add` checks one candidate (the online loop);
`add_many` checks a batch against the pool as it stood before the batch on all worker
threads, then, in arrival order, against the batch's own earlier keepers: the decision for
candidate i depends exactly on the kept candidates before i, as in the greedy rule.

Benchmark and side-by-side check: `python bench/bench_novelty.py [--natural]`.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Callable, Iterable

import numpy as np

from lib.core.errors import UserError
from lib.core.text import tokens as default_tokens
from lib.generate.novelty_index import PoolIndex
from lib.generate.novelty_kernels import LEN_MASK, rouge_f

__all__ = ["NoveltyFilter", "rouge_f"]

BATCH = 2048  # candidates per parallel step of add_many


class NoveltyFilter:
    """Greedy ROUGE-L novelty filter: `add(text)` keeps `text` iff max F vs the pool <= threshold.

        f = NoveltyFilter()
        f.extend(seed_instructions)          # the pool starts with the seeds, unconditionally
        kept = [f.add(t) for t in candidates]   # or f.add_many(candidates): same decisions
        f.most_similar("Write a poem", k=3)  # [(score, text), ...] best first

    `workers` threads run add_many's pool checks (numba; one call at a time per process: the
    default threading layer is not re-entrant). `add` never starts threads: the online loop
    checks one candidate on the calling thread and pays no pool start-up.
    """

    def __init__(self, threshold: float = 0.7, tokenizer: Callable[[str], list[str]] = default_tokens,
                 workers: int = 2):
        self.threshold = float(threshold)
        theta = Fraction(str(threshold))
        if not 0 < theta < 1:
            raise ValueError("threshold must be in (0, 1)")
        self.tokenize = tokenizer
        self.texts: list[str] = []
        self._tok_ids: dict[str, int] = {}  # token -> its first occurrence's element id
        self._repeat_ids: dict[int, int] = {}  # (occurrence k >= 2) << 32 | token id -> element id
        self._index = PoolIndex(theta.numerator, theta.denominator, self.threshold, workers)
        self._queries = 0

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def stats(self) -> dict[str, int]:
        """Work counters (read by the benchmark): queries, posting entries read, pool texts
        touched (`candidates`), past the positional and count bounds, past the bitmap bound,
        exact LCS computed."""
        entries, touched, bounded, bitmap, lcs = (int(x) for x in self._index.counters())
        return {"queries": self._queries, "entries": entries, "candidates": touched,
                "bounded": bounded, "bitmap": bitmap, "lcs": lcs}

    def _encode(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(element ids, token ids) of a text. A token's id is the id of its first-occurrence
        element; its k-th occurrence (k >= 2) is another element. New ids are registered."""
        toks = self.tokenize(text)
        if len(toks) > LEN_MASK:
            raise UserError(f"a text of {len(toks):,} tokens is longer than the {LEN_MASK:,} the "
                            "novelty filter's index can hold: truncate it")
        ids = list(map(self._tok_ids.get, toks))
        fresh: list[int] = []  # token ids of the elements created here, in id order
        if None in ids:
            for k, tok in enumerate(toks):
                if ids[k] is None:
                    ids[k] = self._tok_ids.get(tok)
                    if ids[k] is None:
                        ids[k] = self._tok_ids[tok] = self._index.n_elems + len(fresh)
                        fresh.append(ids[k])
        elems = ids
        if len(set(ids)) < len(ids):
            elems, seen = [], {}
            for tid in ids:
                k = seen[tid] = seen.get(tid, 0) + 1
                if k > 1:
                    key = k << 32 | tid
                    eid = self._repeat_ids.get(key)
                    if eid is None:
                        eid = self._repeat_ids[key] = self._index.n_elems + len(fresh)
                        fresh.append(tid)
                    tid = eid
                elems.append(tid)
        if fresh:
            self._index.add_elements(fresh)
        return np.array(elems, np.int32), np.array(ids, np.int32)

    def _keep(self, text: str, elems: np.ndarray) -> None:
        self.texts.append(text)
        self._index.append(elems)

    def extend(self, texts: Iterable[str]) -> None:
        """Put texts into the pool without checking them (the seed tasks)."""
        for text in texts:
            self._keep(text, self._encode(text)[0])
        self._index.maintain()

    def is_novel(self, text: str) -> bool:
        """Would `add(text)` keep it? (Does not change the pool.)"""
        self._queries += 1
        return not self._index.probe(*self._encode(text))

    def add(self, text: str) -> bool:
        """Keep `text` (True) unless it is too similar to the pool; kept texts join the pool."""
        elems, toks = self._encode(text)
        self._queries += 1
        if self._index.probe(elems, toks):
            return False
        self._keep(text, elems)
        self._index.maintain()
        return True

    def add_many(self, texts: Iterable[str], batch_size: int = BATCH) -> list[bool]:
        """`[self.add(t) for t in texts]`, the pool checks of each batch run on all threads."""
        texts = list(texts)
        out: list[bool] = []
        for start in range(0, len(texts), batch_size):
            out += self._add_batch(texts[start:start + batch_size])
            self._index.maintain()
        return out

    def _add_batch(self, batch: list[str]) -> list[bool]:
        self._index.check_room(len(batch))  # before encoding and probing, not at settling
        encoded = [self._encode(t) for t in batch]
        q_ptr = np.zeros(len(batch) + 1, np.int64)
        np.cumsum([len(e) for e, _ in encoded], out=q_ptr[1:])
        q_elems = np.concatenate([e for e, _ in encoded] + [np.zeros(0, np.int32)])
        q_toks = np.concatenate([t for _, t in encoded] + [np.zeros(0, np.int32)])
        # against the pool as it stood before the batch, on all threads; then in arrival order
        # against the batch's own earlier keepers
        blocked = self._index.probe_batch(q_ptr, q_elems, q_toks)
        keep = self._index.settle(q_ptr, q_elems, q_toks, blocked)
        self._queries += len(batch)
        self.texts += [t for t, k in zip(batch, keep) if k]
        return keep.tolist()

    def most_similar(self, text: str, k: int = 1) -> list[tuple[float, str]]:
        """The k pool texts with the highest ROUGE-L F to `text`, best first (exact, all pool)."""
        n = len(self.texts)
        if not n or k <= 0:
            return []
        _, toks = self._encode(text)
        if not len(toks):
            return [(0.0, t) for t in self.texts[:k]]
        f = self._index.f_all(toks)
        top = np.argsort(-f, kind="stable")[:k]
        return [(float(f[i]), self.texts[i]) for i in top]

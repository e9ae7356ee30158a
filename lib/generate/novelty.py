"""Exact, fast ROUGE-L novelty filter (the Self-Instruct / Alpaca rule).

Alpaca keeps a new instruction only when its ROUGE-L F-measure against every seed and
every instruction kept so far is <= 0.7, computed with `rouge_score` (default tokenizer,
no stemmer) against the whole pool: O(N^2) Python DP tables, hours at 52K. This class
makes *exactly* the same keep/drop decisions, greedily in arrival order, while computing
the exact LCS for only a handful of pool members per candidate:

* F = 2·LCS/(la+lb) and LCS <= min(la, lb)  ->  a length-ratio bound;
* LCS <= multiset token overlap             ->  an overlap bound. A pair can only reach
  F >= θ if the overlap is >= θ/(2-θ)·l for both lengths l (7/13 of each for θ = 0.7), so
  with any fixed total order on (token, occurrence) elements the two "prefixes" of length
  l - t(l) + 1 must share an element (prefix filtering, as in set-similarity joins). Each
  kept text is indexed under its prefix only; a candidate probes its own prefix.
* The order is rare-first: whenever the pool doubles, elements are re-ranked by their
  document frequency in the pool and every prefix is re-indexed (amortised O(N)); an
  element first seen after the last re-rank sorts before all ranked ones, newest first.
  Between re-ranks the order is fixed, which is all that correctness needs; rare-first is
  what makes prefixes short lists of rare words, so few pool members become candidates.
* Survivors get the exact LCS from `rapidfuzz.distance.LCSseq` on token-id strings, and F
  is computed with rouge_score's float formula 2pr/(p+r), so ties at exactly 0.7 round the
  same way. Bounds prune only when the exact rational bound is *strictly* below θ.

Run the side-by-side check and timing with `python bench/bench_novelty.py`.
"""
from __future__ import annotations

from array import array
from fractions import Fraction
from typing import Callable, Iterable

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from lib.core.text import tokens as default_tokens

_SURROGATES = 0xD800


def _id_char(i: int) -> str:
    """Token id -> one code point (skipping surrogates) so an LCS over strings is an LCS over tokens."""
    return chr(i if i < _SURROGATES else i + 0x800)


def rouge_f(lcs: int, la: int, lb: int) -> float:
    """rouge_score's `_score_lcs` F-measure, same float operations in the same order."""
    if not la or not lb:
        return 0.0
    precision = lcs / lb
    recall = lcs / la
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def _rouge_f_array(lcs: np.ndarray, la: int, lb: np.ndarray) -> np.ndarray:
    """`rouge_f` element-wise; numpy float64 does the same IEEE operations in the same order."""
    lcs = lcs.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = lcs / lb
        r = lcs / la
        f = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return np.where(lb > 0, f, 0.0)


class NoveltyFilter:
    """Greedy ROUGE-L novelty filter: `add(text)` keeps `text` iff max F vs the pool <= threshold.

        f = NoveltyFilter()
        f.extend(seed_instructions)          # the pool starts with the seeds, unconditionally
        kept = [f.add(t) for t in candidates]
        f.most_similar("Write a poem", k=3)  # [(score, text), ...] best first
    """

    def __init__(self, threshold: float = 0.7, tokenizer: Callable[[str], list[str]] = default_tokens):
        self.threshold = float(threshold)
        self._theta = Fraction(str(threshold))
        if not 0 < self._theta < 1:
            raise ValueError("threshold must be in (0, 1)")
        self.tokenize = tokenizer
        self.texts: list[str] = []
        self._seqs: list[str] = []
        self._lens: list[int] = []
        self._lens_np = np.zeros(1024, dtype=np.float64)
        self._tok_ids: dict[str, int] = {}
        self._elem_ids: dict[tuple[int, int], int] = {}
        # order key -> (pool position, position of the key in that text's order) pairs whose
        # prefix holds the key, interleaved in one int32 array (cheap appends, zero-copy views)
        self._index: dict[int, array] = {}
        self._rank: dict[int, int] = {}  # element id -> position in the rare-first order
        self._doc_elems: list[list[int]] = []  # element ids of each pool text (for re-ranking)
        self._next_rerank = 64
        # Counters: how much work the bounds saved (read by the benchmark).
        self.stats = {"candidates": 0, "lcs": 0, "queries": 0}

    def __len__(self) -> int:
        return len(self.texts)

    # -- encoding -------------------------------------------------------------------
    def _encode(self, text: str) -> tuple[str, list[int]]:
        tok_ids, elem_ids = self._tok_ids, self._elem_ids
        ids = []
        counts: dict[int, int] = {}
        elems = []
        for tok in self.tokenize(text):
            tid = tok_ids.get(tok)
            if tid is None:
                tid = tok_ids[tok] = len(tok_ids)
            ids.append(tid)
            k = counts[tid] = counts.get(tid, 0) + 1
            eid = elem_ids.get((tid, k))
            if eid is None:
                eid = elem_ids[(tid, k)] = len(elem_ids)
            elems.append(eid)
        return "".join(map(_id_char, ids)), elems

    def _ordered(self, elems: list[int]) -> list[int]:
        # Position in the current order: ranked elements 0..R-1 (rarest first); elements
        # newer than the last re-rank get negative keys, so they come first, newest first.
        rank = self._rank
        keys = [rank.get(e, -e - 1) for e in elems]
        keys.sort()
        return keys

    def _rerank(self) -> None:
        df: dict[int, int] = {}
        for elems in self._doc_elems:
            for e in elems:
                df[e] = df.get(e, 0) + 1
        order = sorted(df, key=lambda e: (df[e], -e))
        self._rank = {e: i for i, e in enumerate(order)}
        self._index = {}
        for doc, elems in enumerate(self._doc_elems):
            if elems:
                self._index_prefix(doc, elems)

    def _min_overlap(self, length: int) -> int:
        # F >= θ needs overlap >= θ/2·(la+lb) and overlap <= la, hence overlap >= θ/(2-θ)·lb.
        num, den = self._theta.numerator, self._theta.denominator
        return -(-num * length // (2 * den - num))  # ceil(θ·l / (2-θ)) in integers

    def _prefix(self, elems: list[int]) -> list[int]:
        n = len(elems)
        return elems[: n - self._min_overlap(n) + 1]

    # -- pool -----------------------------------------------------------------------
    def _insert(self, text: str, seq: str, elems: list[int]) -> None:
        doc = len(self.texts)
        self.texts.append(text)
        self._seqs.append(seq)
        self._lens.append(len(seq))
        if doc >= len(self._lens_np):
            self._lens_np = np.resize(self._lens_np, 2 * len(self._lens_np))
        self._lens_np[doc] = len(seq)
        self._doc_elems.append(elems)
        if seq:
            self._index_prefix(doc, elems)
        if len(self.texts) >= self._next_rerank:
            self._next_rerank *= 2
            self._rerank()

    def _index_prefix(self, doc: int, elems: list[int]) -> None:
        index = self._index
        for pos, key in enumerate(self._prefix(self._ordered(elems))):
            post = index.get(key)
            if post is None:
                post = index[key] = array("i")
            post.append(doc)
            post.append(pos)

    def extend(self, texts: Iterable[str]) -> None:
        """Put texts into the pool without checking them (the seed tasks)."""
        for text in texts:
            seq, elems = self._encode(text)
            self._insert(text, seq, elems)

    def is_novel(self, text: str) -> bool:
        """Would `add(text)` keep it? (Does not change the pool.)"""
        seq, elems = self._encode(text)
        return self._novel(seq, elems)

    def _novel(self, seq: str, elems: list[int]) -> bool:
        self.stats["queries"] += 1
        la = len(seq)
        if not la:
            return True  # rouge_score scores an empty token list 0 against everything
        index = self._index
        posts, qi = [], []
        for i, key in enumerate(self._prefix(self._ordered(elems))):
            post = index.get(key)
            if post is not None:
                posts.append(post)
                qi.append(i)
        if not posts:
            return True
        views = [np.frombuffer(p, dtype=np.int32) for p in posts]
        pairs = np.concatenate(views).reshape(-1, 2)  # (pool position, its position of the key)
        del views  # release the views so the posting arrays may grow again
        qpos = np.repeat(np.asarray(qi, dtype=np.int32), [len(p) >> 1 for p in posts])
        # Positional bound: the first (lowest-order) shared element sits at i in the query and j in
        # the pool text, and everything they share comes at or after it, so
        # overlap <= 1 + min(la-1-i, lb-1-j). np.unique's first index (stable) is the smallest i.
        cands, first = np.unique(pairs[:, 0], return_index=True)
        i = qpos[first]
        j = pairs[first, 1]
        self.stats["candidates"] += len(cands)
        num, den = self._theta.numerator, self._theta.denominator
        lb = self._lens_np[cands]
        # Length bound F <= 2·min/(la+lb), overlap bound F <= 2·ub/(la+lb); prune only when the
        # exact rational bound is strictly below θ.
        ub = np.minimum(np.minimum(lb, la), 1 + np.minimum(la - 1 - i, lb - 1 - j))
        cands = cands[2 * ub * den >= num * (lb + la)]
        if not len(cands):
            return True
        self.stats["lcs"] += len(cands)
        seqs = self._seqs
        choices = [seqs[i] for i in cands.tolist()]
        lcs = process.cdist([seq], choices, scorer=LCSseq.similarity, dtype=np.int32, workers=1)[0]
        return not bool((_rouge_f_array(lcs, la, self._lens_np[cands]) > self.threshold).any())

    def add(self, text: str) -> bool:
        """Keep `text` (True) unless it is too similar to the pool; kept texts join the pool."""
        seq, elems = self._encode(text)
        if not self._novel(seq, elems):
            return False
        self._insert(text, seq, elems)
        return True

    def add_many(self, texts: Iterable[str]) -> list[bool]:
        return [self.add(t) for t in texts]

    def most_similar(self, text: str, k: int = 1) -> list[tuple[float, str]]:
        """The k pool texts with the highest ROUGE-L F to `text`, best first (exact, all pool)."""
        n = len(self.texts)
        if not n or k <= 0:
            return []
        seq, _ = self._encode(text)
        la = len(seq)
        if not la:
            return [(0.0, t) for t in self.texts[:k]]
        lcs = process.cdist([seq], self._seqs, scorer=LCSseq.similarity, dtype=np.int32, workers=1)[0]
        f = _rouge_f_array(lcs, la, self._lens_np[:n])
        top = np.argsort(-f, kind="stable")[:k]
        return [(float(f[i]), self.texts[i]) for i in top]

"""The novelty filter's pool as flat arrays, and its rare-first prefix index.

`PoolIndex` owns what the compiled probe (novelty_kernels.py) reads: each pool text's
element ids (CSR), its length, the element -> token map, the rare-first order, and the index
in three parts: a big and a small level sorted by (element, length, position), which a probe
reads only where the bounds allow, and delta lists (with their lengths) for the texts added
since. It re-ranks
and rebuilds everything when the pool doubled, folds the delta into the small level when the
delta passes 1/16 of the big one, and the small level into the big one when it passes 1/4:
each entry is re-sorted O(log N) times in all. This happens only between probes, never inside
a batch. lib/generate/novelty.py has the rules.
"""
from __future__ import annotations

import numpy as np

from lib.generate import novelty_kernels as K

# Elements beyond a text's prefix that are indexed too: the count bound then prunes any pair
# sharing at most DELTA of them (see novelty.py). Measured best on bench_novelty --natural.
DELTA = 2
SMALL_SHARE = 1 / 4  # rebuild the big level when the small one holds this share of its entries
DELTA_SHARE = 1 / 16  # rebuild the small level when the delta holds this share of the big one
MIN_MERGE = 1 << 13


def _grow(a: np.ndarray, need: int, fill=0, axis: int = -1) -> np.ndarray:
    """`a` with room for at least `need` items along `axis` (doubling; new cells = fill)."""
    n = a.shape[axis]
    if need <= n:
        return a
    shape = list(a.shape)
    shape[axis] = max(need, 2 * n)
    out = np.full(shape, fill, dtype=a.dtype)
    index = [slice(None)] * a.ndim
    index[axis] = slice(0, n)
    out[tuple(index)] = a
    return out


class Scratch:
    """Per-thread work arrays of one probe (hash table of touched texts, its used slots, marks)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.tags = np.zeros(workers, np.int32)
        self.ht = np.zeros((workers, 1 << K.MIN_BITS, 2), np.int32)
        self.touched = np.zeros((workers, 1024), np.int32)
        self.mark = np.zeros((workers, 1024), np.int32)
        self.stats = np.zeros((workers, 4), np.int64)

    def fit(self, n_docs: int, n_elems: int) -> None:
        # a power of two >= 2·n_docs: room for any probe at load <= 1/2 (most use far less of it)
        rows = 1 << max(K.MIN_BITS, (2 * n_docs - 1).bit_length())
        if rows > self.ht.shape[1]:
            self.ht = np.zeros((self.workers, rows, 2), np.int32)
        self.touched = _grow(self.touched, n_docs)
        self.mark = _grow(self.mark, n_elems)


def _empty_level() -> tuple:
    return (np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(1, np.int64),
            np.zeros(0, np.int32), np.zeros(0, np.int32))


class PoolIndex:
    def __init__(self, num: int, den: int, threshold: float, workers: int = 2):
        self.num, self.den, self.delta = num, den, DELTA
        self.rule = (num, den, DELTA, threshold)
        self.n_docs = 0
        self.lens = np.zeros(1024, np.int32)
        self.doc_ptr = np.zeros(1025, np.int64)
        self.doc_elems = np.zeros(16384, np.int32)
        self.n_elems = 0
        self.elem_tok = np.zeros(1024, np.int32)
        self.rank = np.full(1024, -1, np.int64)
        self.big, self.small = _empty_level(), _empty_level()
        self.big_docs = 0  # texts 0..big_docs-1 are in the big level, then the small one
        self.d_head = np.full(1024, -1, np.int32)
        self.d_cnt = np.zeros(1024, np.int64)
        self.d_rows = np.zeros((4096, 4), np.int32)  # NEXT, DOC, LEN, POS (novelty_kernels)
        self.n_delta = 0
        self.next_rerank = 64
        self.one = Scratch(1)  # the single-query path
        self.many = Scratch(max(1, workers))  # the batch path, one row per thread

    # -- growth ---------------------------------------------------------------------
    def add_elements(self, tokens: list[int]) -> None:
        """Register new elements (ids n_elems, n_elems+1, ...) with their token ids."""
        n = self.n_elems + len(tokens)
        self.elem_tok = _grow(self.elem_tok, n)
        self.rank = _grow(self.rank, n, fill=-1)
        self.d_head = _grow(self.d_head, n, fill=-1)
        self.d_cnt = _grow(self.d_cnt, n)
        self.elem_tok[self.n_elems:n] = tokens
        self.n_elems = n

    def make_room(self, docs: int, elems: int) -> None:
        """Capacity for `docs` more texts with `elems` elements in all."""
        n, m = self.n_docs + docs, self.doc_ptr[self.n_docs] + elems
        self.lens = _grow(self.lens, n)
        self.doc_ptr = _grow(self.doc_ptr, n + 1)
        self.doc_elems = _grow(self.doc_elems, m)
        self.d_rows = _grow(self.d_rows, self.n_delta + elems, axis=0)

    def append(self, elems: np.ndarray) -> None:
        """Add one text (its element ids) to the pool and to the delta index."""
        self.make_room(1, len(elems))
        self.n_delta = K.insert(elems, self.lens, self.doc_ptr, self.doc_elems, self.rank,
                                self.n_docs, self.num, self.den, self.delta, self._dl(), self.n_delta)
        self.n_docs += 1

    def maintain(self) -> None:
        """Re-rank when the pool doubled; fold the delta / the small level when they are large."""
        big_entries = len(self.big[3])
        if self.n_docs >= self.next_rerank:
            self.next_rerank = 2 * self.n_docs
            self._rerank()
            self._rebuild(big=True)
        elif len(self.small[3]) + self.n_delta > max(SMALL_SHARE * big_entries, MIN_MERGE):
            self._rebuild(big=True)
        elif self.n_delta > max(DELTA_SHARE * big_entries, MIN_MERGE):
            self._rebuild(big=False)

    def _rerank(self) -> None:
        used = self.doc_elems[: self.doc_ptr[self.n_docs]]
        df = np.bincount(used, minlength=self.n_elems)[: self.n_elems]
        ids = np.arange(self.n_elems)
        order = np.lexsort((-ids, df))  # rarest first; among equals, newest first
        self.rank[: self.n_elems] = -1
        self.rank[order] = np.arange(self.n_elems)

    def _rebuild(self, big: bool) -> None:
        """Rebuild the big level from every text (and empty the small one), or the small level
        from the texts after the big one's; either way the delta lists are emptied."""
        first = 0 if big else self.big_docs
        level = K.build_level(self.lens, self.doc_ptr, self.doc_elems, self.rank, first,
                              self.n_docs, self.n_elems, self.num, self.den, self.delta)
        if big:
            self.big, self.small, self.big_docs = level, _empty_level(), self.n_docs
        else:
            self.small = level
        self.d_head[:] = -1
        self.d_cnt[:] = 0
        self.n_delta = 0

    # -- probes ---------------------------------------------------------------------
    def _dl(self) -> tuple:
        return self.d_head, self.d_rows, self.d_cnt

    def _pool(self) -> tuple:
        return self.lens, self.doc_ptr, self.doc_elems, self.elem_tok

    def probe(self, elems: np.ndarray, toks: np.ndarray, min_doc: int = 0) -> bool:
        """True when some pool text (id >= min_doc) is too similar to the query."""
        s = self.one
        s.fit(self.n_docs, self.n_elems)
        s.tags[0] += 1
        return K.probe(elems, toks, self.rank, min_doc, self.rule, self._pool(), self.big, self.small,
                       self._dl(), s.tags[0], s.ht[0], s.touched[0], s.mark[0], s.stats[0])

    def probe_batch(self, q_ptr: np.ndarray, q_elems: np.ndarray, q_toks: np.ndarray) -> np.ndarray:
        """`probe` of many queries against the current pool, on all worker threads."""
        s = self.many
        s.fit(self.n_docs, self.n_elems)
        return K.probe_batch(q_ptr, q_elems, q_toks, self.rank, self.rule, self._pool(), self.big,
                             self.small, self._dl(), s.tags, s.ht, s.touched, s.mark, s.stats)

    def settle(self, q_ptr: np.ndarray, q_elems: np.ndarray, q_toks: np.ndarray,
               blocked: np.ndarray) -> np.ndarray:
        """Decide a batch in arrival order (see novelty_kernels.settle_batch); keepers join."""
        self.make_room(len(q_ptr) - 1, len(q_elems))
        s = self.one
        s.fit(self.n_docs + len(q_ptr) - 1, self.n_elems)
        keep = np.zeros(len(q_ptr) - 1, np.bool_)
        self.n_docs, self.n_delta, s.tags[0] = K.settle_batch(
            q_ptr, q_elems, q_toks, blocked, keep, self.rank, self.rule, self._pool(), self.big,
            self.small, self._dl(), self.n_docs, self.n_delta, s.tags[0], s.ht[0], s.touched[0],
            s.mark[0], s.stats[0])
        return keep

    def f_all(self, toks: np.ndarray) -> np.ndarray:
        """Exact ROUGE-L F of a query (token ids) against every pool text."""
        return K.f_all(toks, self._pool(), self.n_docs)

    def counters(self) -> np.ndarray:
        """Posting entries read, texts touched, texts past the count bound, exact LCS computed."""
        return self.one.stats.sum(axis=0) + self.many.stats.sum(axis=0)

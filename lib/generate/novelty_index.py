"""The novelty filter's pool as flat arrays, and its rare-first prefix index.

`PoolIndex` owns what the compiled probe (novelty_kernels.py) reads: each pool text's
element ids (CSR), its length, the element -> token map, the rare-first order, and the index:
three levels (big, small, tiny) sorted by (element, length, position), which a probe reads
only where the bounds allow, and delta lists (with their lengths) for the texts added since.
It re-ranks and re-sorts everything when the pool doubled. In between, when the delta passes
1/512 of the big level's entries it is sorted into a level of its own and merged into the tiny
level; a level past its share of the big one (tiny 1/64, small 1/8) is merged into the next
larger one. A merge is a sequential pass (the levels are sorted the same way), so the delta --
a walk over per-element lists that reads every length -- stays small at any pool size. This
happens only between probes, never inside a batch. lib/generate/novelty.py has the rules.
"""
from __future__ import annotations

import numpy as np

from lib.core.errors import UserError
from lib.generate import novelty_kernels as K

# Elements beyond a text's prefix that are indexed too: the count bound then prunes any pair
# sharing at most DELTA of them (see novelty.py). Measured best on bench_novelty --natural.
DELTA = 2
# the most entries the small and tiny levels and the delta hold, as shares of the big level's
# (or MIN_MERGE, whichever is larger); each is 1/8 of the one above, so an entry is merged about
# 8 times per level before the next re-sort
LEVEL_SHARE = (1.0, 1 / 8, 1 / 64)
DELTA_SHARE = 1 / 512
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
    """Per-thread work arrays of one probe (novelty_kernels says what they hold): 2 bits per pool
    text (its state in the count bound), the texts it touched, a bit per element (the query's)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.cnt = np.zeros((workers, K.state_words(1024)), np.uint64)
        self.touched = np.zeros((workers, 1024), np.int32)
        self.mark = np.zeros((workers, 32), np.uint64)
        self.stats = np.zeros((workers, K.COUNTERS), np.int64)

    def fit(self, n_docs: int, n_elems: int) -> None:
        # the kernels index these without bounds checks: a state per text, one touched slot more
        # than there are texts (a touch writes its slot before it knows the text is fresh), a bit
        # per element
        self.cnt = _grow(self.cnt, K.state_words(n_docs))
        self.touched = _grow(self.touched, n_docs + 1)
        self.mark = _grow(self.mark, n_elems // 64 + 1)


def _empty_level() -> tuple:
    return np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(0, np.uint32)


class PoolIndex:
    def __init__(self, num: int, den: int, threshold: float, workers: int = 2):
        self.num, self.den, self.delta = num, den, DELTA
        self.rule = (num, den, DELTA, threshold)
        # a text's state in the count bound (novelty_kernels) is 0..DELTA+1 in K.STATE_BITS bits
        assert DELTA + 1 <= K.STATE_MASK
        self.n_docs = 0
        self.lens = np.zeros(1024, np.int32)
        self.doc_ptr = np.zeros(1025, np.int64)
        self.doc_elems = np.zeros(16384, np.int32)
        self.doc_bm = np.zeros((1024, K.BM_WORDS), np.int64)
        self.n_elems = 0
        self.elem_tok = np.zeros(1024, np.int32)
        self.rank = np.full(1024, -1, np.int64)
        self.levels = [_empty_level() for _ in LEVEL_SHARE]  # big, small, tiny
        self.indexed = 0  # texts 0..indexed-1 are in the levels, the rest in the delta
        self.d_head = np.full(1024, -1, np.int32)
        self.d_cnt = np.zeros(1024, np.int64)
        self.d_rows = np.zeros((4096, 4), np.int32)  # chunks of K.CHUNK rows (novelty_kernels)
        self.d_n = np.zeros(2, np.int64)  # delta entries, delta chunks
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

    def check_room(self, docs: int) -> None:
        """Refuse `docs` more texts if the pool could then pass the texts an index entry can
        number (novelty_kernels.MAX_DOCS); callers check before any work on them."""
        n = self.n_docs + docs
        if n > K.MAX_DOCS:
            raise UserError(f"the novelty pool would hold {n:,} texts, more than the {K.MAX_DOCS:,} "
                            "its index can number: filter the candidates in several runs")

    def make_room(self, docs: int, elems: int) -> None:
        """Capacity for `docs` more texts with `elems` elements in all."""
        self.check_room(docs)
        n, m = self.n_docs + docs, self.doc_ptr[self.n_docs] + elems
        self.lens = _grow(self.lens, n)
        self.doc_ptr = _grow(self.doc_ptr, n + 1)
        self.doc_bm = _grow(self.doc_bm, n, axis=0)
        self.doc_elems = _grow(self.doc_elems, m)
        # a new entry may start a new chunk
        self.d_rows = _grow(self.d_rows, (self.d_n[1] + elems) * K.CHUNK, axis=0)

    def append(self, elems: np.ndarray) -> None:
        """Add one text (its element ids) to the pool and to the delta index."""
        self.make_room(1, len(elems))
        K.insert(elems, self._pool(), self.rank, self.n_docs, self.num, self.den, self.delta,
                 self._dl())
        self.n_docs += 1

    def maintain(self) -> None:
        """Re-rank and re-sort when the pool doubled; else fold a full delta into the levels."""
        if self.n_docs >= self.next_rerank:
            self.next_rerank = 2 * self.n_docs
            self._rerank()
            self.levels = [self._sorted(0)] + [_empty_level() for _ in LEVEL_SHARE[1:]]
            return
        big = len(self.levels[0][2])
        if self.n_delta <= max(DELTA_SHARE * big, MIN_MERGE):
            return
        new = self._sorted(self.indexed)
        for k in range(len(LEVEL_SHARE) - 1, 0, -1):  # tiny, then small while one overflows
            new = K.merge_levels(self.levels[k], new, self.n_elems)
            if len(new[2]) <= max(LEVEL_SHARE[k] * big, MIN_MERGE):
                self.levels[k] = new
                return
            self.levels[k] = _empty_level()
        self.levels[0] = K.merge_levels(self.levels[0], new, self.n_elems)

    def _rerank(self) -> None:
        used = self.doc_elems[: self.doc_ptr[self.n_docs]]
        df = np.bincount(used, minlength=self.n_elems)[: self.n_elems]
        ids = np.arange(self.n_elems)
        order = np.lexsort((-ids, df))  # rarest first; among equals, newest first
        self.rank[: self.n_elems] = -1
        self.rank[order] = np.arange(self.n_elems)

    def _sorted(self, first: int) -> tuple:
        """A sorted level of the texts first..n_docs-1; they leave the delta (emptied)."""
        level = K.build_level(self.lens, self.doc_ptr, self.doc_elems, self.rank, first,
                              self.n_docs, self.n_elems, self.num, self.den, self.delta)
        self.indexed = self.n_docs
        self.d_head[:] = -1
        self.d_cnt[:] = 0
        self.d_n[:] = 0
        return level

    # -- probes ---------------------------------------------------------------------
    @property
    def n_delta(self) -> int:
        """Entries in the delta lists."""
        return int(self.d_n[0])

    def _dl(self) -> tuple:
        return self.d_head, self.d_rows, self.d_cnt, self.d_n

    def _pool(self) -> tuple:
        return self.lens, self.doc_ptr, self.doc_elems, self.elem_tok, self.doc_bm

    def probe(self, elems: np.ndarray, toks: np.ndarray, min_doc: int = 0) -> bool:
        """True when some pool text (id >= min_doc) is too similar to the query."""
        s = self.one
        s.fit(self.n_docs, self.n_elems)
        return K.probe(elems, toks, self.rank, min_doc, self.rule, self._pool(),
                       tuple(self.levels), self._dl(), s.cnt[0], s.touched[0], s.mark[0],
                       s.stats[0])

    def probe_batch(self, q_ptr: np.ndarray, q_elems: np.ndarray, q_toks: np.ndarray) -> np.ndarray:
        """`probe` of many queries against the current pool, on all worker threads."""
        s = self.many
        s.fit(self.n_docs, self.n_elems)
        return K.probe_batch(q_ptr, q_elems, q_toks, self.rank, self.rule, self._pool(),
                             tuple(self.levels), self._dl(), s.cnt, s.touched, s.mark,
                             s.stats)

    def settle(self, q_ptr: np.ndarray, q_elems: np.ndarray, q_toks: np.ndarray,
               blocked: np.ndarray) -> np.ndarray:
        """Decide a batch in arrival order (see novelty_kernels.settle_batch); keepers join."""
        self.make_room(len(q_ptr) - 1, len(q_elems))
        s = self.one
        s.fit(self.n_docs + len(q_ptr) - 1, self.n_elems)
        keep = np.zeros(len(q_ptr) - 1, np.bool_)
        self.n_docs = K.settle_batch(
            q_ptr, q_elems, q_toks, blocked, keep, self.rank, self.rule, self._pool(),
            tuple(self.levels), self._dl(), self.n_docs, s.cnt[0], s.touched[0],
            s.mark[0], s.stats[0])
        return keep

    def f_all(self, toks: np.ndarray) -> np.ndarray:
        """Exact ROUGE-L F of a query (token ids) against every pool text."""
        return K.f_all(toks, self._pool(), self.n_docs)

    def counters(self) -> np.ndarray:
        """Posting entries read, texts touched, past the count bound, past the bitmap bound,
        exact LCS computed."""
        return self.one.stats.sum(axis=0) + self.many.stats.sum(axis=0)

"""Compiled loops of the novelty filter (numba): build the prefix index, probe it, verify.

lib/generate/novelty.py explains the filter chain and why each bound is safe; this module
holds only the loops that must run at C speed (one probe reads thousands of posting entries
at BELLE scale). Every integer test here is the exact rational test of the docstring there,
with θ = num/den; nothing is approximated.

Tuples of arrays the kernels share (owned by novelty_index.PoolIndex):
  pool   = (lens, doc_ptr, doc_elems, elem_tok): length of text d, CSR of its element ids in
           text order, and the token id of each element (for the exact LCS)
  level  = (g_ptr, g_lb, g_start, st_j, st_doc): a sorted index level. Entries (position j of
           the element in text st_doc) are grouped by (element, text length): element e owns
           groups g_ptr[e]..g_ptr[e+1]-1, group g holds texts of length g_lb[g] in entries
           g_start[g]..g_start[g+1]-1, sorted by position.
  delta  = (d_head, d_rows, d_cnt): texts added since the last level was built, one linked list
           per element, newest first, and each list's length. An entry is one row of d_rows
           (NEXT, DOC, LEN, POS: next entry, text, its length, position), one cache line.
  rule   = (num, den, delta_extra, threshold)
"""
from __future__ import annotations

import numba as nb
import numpy as np

# Scratch of one probe: an open-addressing hash table of the pool texts it touched (linear
# probing, Fibonacci hashing), sized from a bound on the texts it can touch, so that it stays in
# the L1/L2 cache however large the pool is (a row per pool text costs a cache miss per posting
# entry at BELLE scale). Slot: KEY = text id + 1 (0 = empty); SCORE = shared elements counted
# minus those the count bound needs. Texts whose first shared element fails the positional bound
# are never put in. A probe empties the slots it used before it returns.
KEY, SCORE = 0, 1
MIN_BITS = 10  # the smallest table: 1,024 slots
LINE = 16  # element ids (int32) per 64-byte cache line
NEXT, DOC, LEN, POS = 0, 1, 2, 3  # the columns of a delta entry
# Counters a probe adds to: posting entries read, texts touched, texts past the bounds,
# texts past the bag bound (= exact LCS computed).
ENTRIES, CANDIDATES, BOUNDED, LCS = 0, 1, 2, 3


@nb.njit(cache=True, inline="always")
def need(la, lb, num, den):
    """t(la, lb) = ceil(θ(la+lb)/2): F >= θ needs at least this many shared tokens."""
    return (num * (la + lb) + 2 * den - 1) // (2 * den)


@nb.njit(cache=True, inline="always")
def least(length, num, den):
    """ceil(θ·l/(2-θ)): the fewest shared tokens a text of length l needs with any partner."""
    d = 2 * den - num
    return (num * length + d - 1) // d


@nb.njit(cache=True, inline="always")
def indexed_len(length, num, den, delta):
    """How many of a text's rarest elements are indexed: the prefix, plus `delta`."""
    return min(length, length - least(length, num, den) + 1 + delta)


@nb.njit(cache=True)
def sort_by_rank(elems, rank):
    """Elements in the rare-first order: ranked ones by rank, newer ones first, newest first."""
    keys = np.empty(len(elems), np.int64)
    for k in range(len(elems)):
        e = elems[k]
        r = rank[e]
        keys[k] = r if r >= 0 else -(np.int64(e) + 1)
    return elems[np.argsort(keys, kind="mergesort")]


@nb.njit(cache=True)
def build_level(lens, doc_ptr, doc_elems, rank, first, last, n_elems, num, den, delta):
    """The sorted level (see the module docstring) of texts first..last-1: a counting sort by
    element, then each element's entries sorted by (length, position)."""
    count = np.zeros(n_elems + 1, np.int64)
    for d in range(first, last):
        if lens[d]:
            order = sort_by_rank(doc_elems[doc_ptr[d]:doc_ptr[d + 1]], rank)
            for j in range(indexed_len(lens[d], num, den, delta)):
                count[order[j] + 1] += 1
    ptr = np.cumsum(count)
    fill = ptr[:-1].copy()
    key = np.empty(ptr[-1], np.int64)  # length << 32 | position
    doc = np.empty(ptr[-1], np.int32)
    for d in range(first, last):
        if lens[d]:
            order = sort_by_rank(doc_elems[doc_ptr[d]:doc_ptr[d + 1]], rank)
            for j in range(indexed_len(lens[d], num, den, delta)):
                k = fill[order[j]]
                key[k], doc[k] = (np.int64(lens[d]) << 32) | j, d
                fill[order[j]] += 1
    for e in range(n_elems):
        a, b = ptr[e], ptr[e + 1]
        if b - a > 1:
            perm = np.argsort(key[a:b], kind="mergesort")
            key[a:b], doc[a:b] = key[a:b][perm], doc[a:b][perm]
    return _groups(ptr, key, doc, n_elems)


@nb.njit(cache=True)
def _groups(ptr, key, doc, n_elems):
    """Group boundaries of sorted entries: one group per (element, length)."""
    n_groups = 0
    for e in range(n_elems):
        for k in range(ptr[e], ptr[e + 1]):
            if k == ptr[e] or (key[k] >> 32) != (key[k - 1] >> 32):
                n_groups += 1
    g_ptr = np.zeros(n_elems + 1, np.int64)
    g_lb = np.empty(n_groups, np.int32)
    g_start = np.empty(n_groups + 1, np.int64)
    g = 0
    for e in range(n_elems):
        for k in range(ptr[e], ptr[e + 1]):
            if k == ptr[e] or (key[k] >> 32) != (key[k - 1] >> 32):
                g_lb[g], g_start[g] = key[k] >> 32, k
                g += 1
        g_ptr[e + 1] = g
    g_start[n_groups] = len(key)
    st_j = (key & 0xFFFFFFFF).astype(np.int32)
    return g_ptr, g_lb, g_start, st_j, doc


@nb.njit(cache=True)
def insert(elems, lens, doc_ptr, doc_elems, rank, n_docs, num, den, delta, dl, n_delta):
    """Append a text to the pool arrays (room is made by the caller) and index its prefix in
    the delta lists, newest first; returns the new delta entry count."""
    d = n_docs
    lb = len(elems)
    start = doc_ptr[d]
    doc_elems[start:start + lb] = elems
    doc_ptr[d + 1] = start + lb
    lens[d] = lb
    if lb == 0:
        return n_delta
    d_head, d_rows, d_cnt = dl
    order = sort_by_rank(elems, rank)
    for j in range(indexed_len(lb, num, den, delta)):
        e = order[j]
        d_rows[n_delta, NEXT] = d_head[e]
        d_head[e] = n_delta
        d_cnt[e] += 1
        d_rows[n_delta, DOC], d_rows[n_delta, LEN], d_rows[n_delta, POS] = d, lb, j
        n_delta += 1
    return n_delta


@nb.njit(cache=True, inline="always")
def _start(t, delta):
    """A text's score at its first shared element: minus the further shared elements the count
    bound needs. With t = t(la, lb) the pair prefixes are la-t+1+δ and lb-t+1+δ long (or the
    whole text), so overlap <= c + max(0, t-1-δ) and c must reach t - max(0, t-1-δ)."""
    return 1 - t + max(0, t - 1 - delta)


@nb.njit(cache=True, inline="always")
def table_bits(bound, rows):
    """log2 of the table size for at most `bound` texts: load <= 1/2, at most `rows` slots."""
    bits = MIN_BITS
    while (1 << bits) < 2 * bound and (2 << bits) <= rows:
        bits += 1
    return bits


@nb.njit(cache=True, inline="always")
def _slot(d, ht, bits):
    """The slot of text d in the table: its own, or the empty one where it would go."""
    mask = (1 << bits) - 1
    s = ((np.int64(d) * 2654435761) & 0xFFFFFFFF) >> (32 - bits)
    while ht[s, KEY] != 0 and ht[s, KEY] != d + 1:
        s = (s + 1) & mask
    return s


@nb.njit(cache=True, inline="always")
def _touch(d, start, ht, bits, touched, n_touched):
    """Count a shared element of text d. The caller has checked that this entry passes the
    positional bound (so on d's first shared element the pair is alive and starts at `start`)."""
    s = _slot(d, ht, bits)
    if ht[s, KEY] != 0:
        ht[s, SCORE] += 1
        return n_touched
    ht[s, KEY] = d + 1
    ht[s, SCORE] = start
    touched[n_touched] = s
    return n_touched + 1


@nb.njit(cache=True, inline="always")
def _count(d, ht, bits):
    """Count a shared element of text d only if an earlier element touched it: an entry past
    the positional bound min(la-i, lb-j) >= t can only be a later shared element of a live pair
    (elements come in the same order in both texts, so d's first one was at a smaller i and j,
    and had it been past the bound, so would every later one)."""
    s = _slot(d, ht, bits)
    if ht[s, KEY] != 0:
        ht[s, SCORE] += 1


@nb.njit(cache=True)
def _scan_level(e, i, la, lo, hi, rule, level, ht, bits, touched, n_touched, stats):
    """Entries of element e in a sorted level: lengths lo..hi, positions inside the pair prefix;
    first those that pass the positional bound (positions j <= lb-t), then the δ after them."""
    num, den, delta, _ = rule
    g_ptr, g_lb, g_start, st_j, st_doc = level
    if e + 1 >= len(g_ptr):
        return n_touched
    g, g_end = g_ptr[e], g_ptr[e + 1]
    g += np.searchsorted(g_lb[g:g_end], lo)
    while g < g_end and g_lb[g] <= hi:
        lb = g_lb[g]
        t = need(la, lb, num, den)
        jmax = lb - t + delta  # last position of the pool text's pair prefix
        jnew = lb - t if la - i >= t else -1  # last position that passes the positional bound
        start = _start(t, delta)
        k, end = g_start[g], g_start[g + 1]
        while k < end and st_j[k] <= jnew:
            n_touched = _touch(st_doc[k], start, ht, bits, touched, n_touched)
            k += 1
        while k < end and st_j[k] <= jmax:
            _count(st_doc[k], ht, bits)
            k += 1
        stats[ENTRIES] += k - g_start[g]
        g += 1
    return n_touched


@nb.njit(cache=True)
def _scan_delta(e, i, la, lo, hi, rule, min_doc, dl, ht, bits, touched, n_touched, stats):
    """The same test over element e's delta list (newest first, so stop below min_doc)."""
    num, den, delta, _ = rule
    d_head, d_rows, _ = dl
    if e >= len(d_head):
        return n_touched
    k = d_head[e]
    while k >= 0 and d_rows[k, DOC] >= min_doc:
        lb = d_rows[k, LEN]
        j = d_rows[k, POS]
        stats[ENTRIES] += 1
        if lo <= lb <= hi:
            t = need(la, lb, num, den)
            if j <= lb - t and la - i >= t:
                n_touched = _touch(d_rows[k, DOC], _start(t, delta), ht, bits, touched, n_touched)
            elif j <= lb - t + delta:
                _count(d_rows[k, DOC], ht, bits)
        k = d_rows[k, NEXT]
    return n_touched


@nb.njit(cache=True)
def lcs_length(a, b):
    """Length of the longest common subsequence of two token-id arrays (two-row DP)."""
    if len(a) < len(b):
        a, b = b, a
    prev = np.zeros(len(b) + 1, np.int32)
    cur = np.zeros(len(b) + 1, np.int32)
    for x in a:
        for k in range(len(b)):
            if x == b[k]:
                cur[k + 1] = prev[k] + 1
            else:
                cur[k + 1] = max(cur[k], prev[k + 1])
        prev, cur = cur, prev
    return prev[len(b)]


@nb.njit(cache=True)
def rouge_f(lcs, la, lb):
    """rouge_score's `_score_lcs` F-measure of an LCS between texts of la and lb tokens: the
    same float operations in the same order (precision against the pool text, lb)."""
    if la == 0 or lb == 0:
        return 0.0
    precision = lcs / lb
    recall = lcs / la
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


@nb.njit(cache=True)
def _verify(qe, qt, rule, pool, tag, ht, touched, n_touched, mark, stats):
    """Count bound, then the bag bound, then the exact F, per touched text; True = too similar.

    The texts past the count bound are read in passes of independent loads (their offsets, then
    the first two cache lines of their elements, then the rest), so that their cache misses
    overlap instead of each text waiting for its own: at BELLE scale they are the probe's
    slowest memory accesses."""
    num, den, _, thr = rule
    _, doc_ptr, doc_elems, elem_tok = pool
    la = len(qe)
    stats[CANDIDATES] += n_touched
    first = np.empty(n_touched, np.int64)
    m = 0
    for k in range(n_touched):
        s = touched[k]
        if ht[s, SCORE] >= 0:
            first[m] = ht[s, KEY] - 1  # the text id, until its offset replaces it below
            m += 1
    stats[BOUNDED] += m
    if m == 0:
        return False
    for e in qe:
        mark[e] = tag
    end = np.empty(m, np.int64)
    for c in range(m):
        d = first[c]
        first[c], end[c] = doc_ptr[d], doc_ptr[d + 1]
    bag = np.zeros(m, np.int64)
    for c in range(m):
        bag[c] = (mark[doc_elems[first[c]]] == tag) + \
            (end[c] - first[c] > LINE and mark[doc_elems[first[c] + LINE]] == tag)
    for c in range(m):
        a, b = first[c], end[c]
        lb = b - a
        shared = bag[c]
        for k in range(a + 1, b):
            if k != a + LINE and mark[doc_elems[k]] == tag:
                shared += 1
        if shared < need(la, lb, num, den):
            continue
        stats[LCS] += 1
        if rouge_f(lcs_length(qt, elem_tok[doc_elems[a:b]]), la, lb) > thr:
            return True
    return False


@nb.njit(cache=True)
def _level_bound(e, lo, hi, level):
    """Entries of element e with lengths lo..hi in a sorted level (>= the texts they touch)."""
    g_ptr, g_lb, g_start, _, _ = level
    if e + 1 >= len(g_ptr):
        return 0
    g, g_end = g_ptr[e], g_ptr[e + 1]
    g += np.searchsorted(g_lb[g:g_end], lo)
    h = g
    while h < g_end and g_lb[h] <= hi:
        h += 1
    return g_start[h] - g_start[g]


@nb.njit(cache=True)
def _touch_bound(qe, lo, hi0, min_doc, rule, big, small, d_cnt):
    """At most how many texts a probe puts in its table: the entries it may read at the query
    positions where a first shared element can pass the positional bound (la-i >= least(la))."""
    num, den, delta, _ = rule
    la = len(qe)
    bound = 0
    for i in range(la - least(la, num, den) + 1):
        hi = min(hi0, 2 * den * (la - i + delta) // num - la)
        if hi < lo:
            break
        e = qe[i]
        if min_doc == 0:
            bound += _level_bound(e, lo, hi, big) + _level_bound(e, lo, hi, small)
        if e < len(d_cnt):
            bound += d_cnt[e]
    return bound


@nb.njit(cache=True)
def probe(q_elems, qt, rank, min_doc, rule, pool, big, small, dl, tag, ht, touched, mark, stats):
    """True when a pool text (id >= min_doc) has ROUGE-L F > threshold against the query.

    min_doc > 0 reads only the delta lists: the caller guarantees those hold every text from
    min_doc on (no rebuild since), which is how a batch checks its own earlier keepers."""
    num, den, delta, _ = rule
    la = len(q_elems)
    if la == 0:
        return False
    qe = sort_by_rank(q_elems, rank)
    lo = least(la, num, den)               # length bound: lb >= θ·la/(2-θ)
    hi0 = (2 * den - num) * la // num      # and lb <= (2-θ)·la/θ
    bits = table_bits(_touch_bound(qe, lo, hi0, min_doc, rule, big, small, dl[2]), len(ht))
    n_touched = 0
    for i in range(indexed_len(la, num, den, delta)):
        # position i lies in the query's pair prefix only for partners with t(la, lb) <= la-i+δ
        hi = min(hi0, 2 * den * (la - i + delta) // num - la)
        if hi < lo:
            break
        e = qe[i]
        if min_doc == 0:
            n_touched = _scan_level(e, i, la, lo, hi, rule, big, ht, bits, touched, n_touched, stats)
            n_touched = _scan_level(e, i, la, lo, hi, rule, small, ht, bits, touched, n_touched, stats)
        n_touched = _scan_delta(e, i, la, lo, hi, rule, min_doc, dl, ht, bits, touched, n_touched,
                                stats)
    found = _verify(qe, qt, rule, pool, tag, ht, touched, n_touched, mark, stats)
    for k in range(n_touched):
        ht[touched[k], KEY] = 0
    return found


@nb.njit(cache=True, parallel=True)
def probe_batch(q_ptr, q_elems, q_toks, rank, rule, pool, big, small, dl, tags, ht, touched, mark,
                stats):
    """`probe` for many queries against the same (frozen) pool, one slice per thread."""
    n = len(q_ptr) - 1
    workers = len(tags)
    blocked = np.zeros(n, np.bool_)
    per = (n + workers - 1) // workers
    for w in nb.prange(workers):
        for q in range(w * per, min(n, (w + 1) * per)):
            tags[w] += 1
            a, b = q_ptr[q], q_ptr[q + 1]
            blocked[q] = probe(q_elems[a:b], q_toks[a:b], rank, 0, rule, pool, big, small, dl,
                               tags[w], ht[w], touched[w], mark[w], stats[w])
    return blocked


@nb.njit(cache=True)
def f_all(qt, pool, n_docs):
    """Exact ROUGE-L F of the query against every pool text (for most_similar)."""
    lens, doc_ptr, doc_elems, elem_tok = pool
    out = np.zeros(n_docs, np.float64)
    for d in range(n_docs):
        if lens[d]:
            out[d] = rouge_f(lcs_length(qt, elem_tok[doc_elems[doc_ptr[d]:doc_ptr[d + 1]]]),
                             len(qt), lens[d])
    return out


@nb.njit(cache=True)
def settle_batch(q_ptr, q_elems, q_toks, blocked, keep, rank, rule, pool, big, small, dl,
                 n_docs, n_delta, tag, ht, touched, mark, stats):
    """In arrival order: a batch query not blocked by the pool is checked against the batch's
    earlier keepers (texts n_docs.. on, all in the delta lists) and kept or dropped; keepers
    join the pool. Fills `keep`; returns (n_docs, n_delta, tag) after the batch."""
    num, den, delta, _ = rule
    lens, doc_ptr, doc_elems, _ = pool
    first = n_docs
    for q in range(len(q_ptr) - 1):
        a, b = q_ptr[q], q_ptr[q + 1]
        if blocked[q]:
            continue
        tag += 1
        if probe(q_elems[a:b], q_toks[a:b], rank, first, rule, pool, big, small, dl, tag, ht,
                 touched, mark, stats):
            continue
        keep[q] = True
        n_delta = insert(q_elems[a:b], lens, doc_ptr, doc_elems, rank, n_docs, num, den, delta,
                         dl, n_delta)
        n_docs += 1
    return n_docs, n_delta, tag

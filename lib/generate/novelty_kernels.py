"""Compiled loops of the novelty filter (numba): build the prefix index, probe it, verify.

lib/generate/novelty.py explains the filter chain and why each bound is safe; this module
holds only the loops that must run at C speed (one probe reads thousands of posting entries
at BELLE scale). Every integer test here is the exact rational test of the docstring there,
with θ = num/den; nothing is approximated.

Tuples of arrays the kernels share (owned by novelty_index.PoolIndex):
  pool   = (lens, doc_ptr, doc_elems, elem_tok, doc_bm): length of text d, CSR of its element
           ids in text order, the token id of each element (for the exact LCS), and each text's
           bitmap (see `bitmap`)
  level  = (g_ptr, g_lb, g_start, st_j, st_doc): a sorted index level. Entries (position j of
           the element in text st_doc) are grouped by (element, text length): element e owns
           groups g_ptr[e]..g_ptr[e+1]-1, group g holds texts of length g_lb[g] in entries
           g_start[g]..g_start[g+1]-1, sorted by position.
  delta  = (d_head, d_rows, d_cnt, d_n): texts added since the last level was built, one list
           per element, newest first, and each list's length; d_n = (entries, chunks) in use.
           A list is a chain of chunks of CHUNK rows of d_rows (128 bytes, two cache lines):
           row 0 = (NEXT chunk, FILL), rows 1..FILL = entries (DOC, LEN, POS: text, its
           length, position), oldest first. A walk waits for one memory load per chunk, not
           one per entry (the walk at BELLE scale was a chain of cache misses).
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
QUERY_CHUNK = 16  # queries a probe_batch thread takes at a time
CHUNK = 8  # rows per delta chunk: a header and up to 7 entries
NEXT, FILL = 0, 1  # the columns of a chunk's header row
DOC, LEN, POS = 0, 1, 2  # the columns of a delta entry
# Counters a probe adds to: posting entries read, texts touched, texts past the count bound,
# past the bitmap bound, past the bag bound (= exact LCS computed).
ENTRIES, CANDIDATES, BOUNDED, BITMAP, LCS = 0, 1, 2, 3, 4
COUNTERS = 5
BITS = 63  # bitmap width: bit 63 stays clear, so bitmaps are non-negative int64 everywhere


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
def bitmap(elems):
    """A text's bitmap: bit h(e) set for each of its elements (h hashes an element id to 0..62).
    Shared elements set the same bit in both texts, so a bit set in only one of two bitmaps comes
    from an element only that text has, and different bits from different elements:
    popcount(bx ^ by) <= |x - y| + |y - x| = la + lb - 2·overlap (the bitmap bound)."""
    bm = np.int64(0)
    for e in elems:
        bm |= np.int64(1) << (((np.int64(e) * 2654435761) & 0xFFFFFFFF) % BITS)
    return bm


@nb.njit(cache=True, inline="always")
def popcount(x):
    """Set bits of a non-negative int64 (shifts and adds only: no overflow as plain Python)."""
    x = x - ((x >> 1) & 0x5555555555555555)
    x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0F
    x = x + (x >> 8)
    x = x + (x >> 16)
    x = x + (x >> 32)
    return x & 0x7F


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
    # positions saturate at 255: a stored position is <= the real one, so the scan reads an entry
    # at least as often as it should (touching or counting more is safe, see _scan_level)
    st_j = np.minimum(key & 0xFFFFFFFF, 255).astype(np.uint8)
    return g_ptr, g_lb, g_start, st_j, doc


@nb.njit(cache=True)
def merge_levels(a, b, n_elems):
    """One sorted level holding the entries of levels a and b: per element, a merge of two runs
    already sorted by (length, position), so folding a level into a larger one costs a
    sequential pass instead of a sort."""
    n = len(a[4]) + len(b[4])
    ptr = np.zeros(n_elems + 1, np.int64)
    key = np.empty(n, np.int64)
    doc = np.empty(n, np.int32)
    k = 0
    for e in range(n_elems):
        ka, kb = _run(a, e), _run(b, e)
        ea, eb = ka[1], kb[1]
        ia, ib = ka[0], kb[0]
        ga, gb = ka[2], kb[2]
        while ia < ea or ib < eb:
            if ib >= eb or (ia < ea and _key(a, ga, ia) <= _key(b, gb, ib)):
                key[k], doc[k] = _key(a, ga, ia), a[4][ia]
                ia += 1
                if ia < ea and ia == a[2][ga + 1]:
                    ga += 1
            else:
                key[k], doc[k] = _key(b, gb, ib), b[4][ib]
                ib += 1
                if ib < eb and ib == b[2][gb + 1]:
                    gb += 1
            k += 1
        ptr[e + 1] = k
    return _groups(ptr, key, doc, n_elems)


@nb.njit(cache=True, inline="always")
def _run(level, e):
    """(first entry, end, first group) of element e's entries in a level."""
    g_ptr, g_start = level[0], level[2]
    if e + 1 >= len(g_ptr) or g_ptr[e] == g_ptr[e + 1]:
        return 0, 0, 0
    return g_start[g_ptr[e]], g_start[g_ptr[e + 1]], g_ptr[e]


@nb.njit(cache=True, inline="always")
def _key(level, g, k):
    """The sort key (length << 32 | stored position) of entry k, in group g."""
    return (np.int64(level[1][g]) << 32) | level[3][k]


@nb.njit(cache=True)
def insert(elems, pool, rank, n_docs, num, den, delta, dl):
    """Append a text to the pool arrays (room is made by the caller: a chunk per element at
    most) and index its prefix in the delta lists."""
    lens, doc_ptr, doc_elems, _, doc_bm = pool
    d = n_docs
    lb = len(elems)
    doc_bm[d] = bitmap(elems)
    start = doc_ptr[d]
    doc_elems[start:start + lb] = elems
    doc_ptr[d + 1] = start + lb
    lens[d] = lb
    if lb == 0:
        return
    d_head, d_rows, d_cnt, d_n = dl
    order = sort_by_rank(elems, rank)
    for j in range(indexed_len(lb, num, den, delta)):
        e = order[j]
        c = d_head[e]
        if c < 0 or d_rows[c * CHUNK, FILL] == CHUNK - 1:  # a new chunk heads e's list
            nc = d_n[1]
            d_n[1] += 1
            d_rows[nc * CHUNK, NEXT], d_rows[nc * CHUNK, FILL] = c, 0
            d_head[e] = c = nc
        row = c * CHUNK + d_rows[c * CHUNK, FILL] + 1
        d_rows[row, DOC], d_rows[row, LEN], d_rows[row, POS] = d, lb, j
        d_rows[c * CHUNK, FILL] += 1
        d_cnt[e] += 1
        d_n[0] += 1


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
    d_head, d_rows = dl[0], dl[1]
    if e >= len(d_head):
        return n_touched
    c = d_head[e]
    while c >= 0:
        for k in range(c * CHUNK + d_rows[c * CHUNK, FILL], c * CHUNK, -1):  # newest first
            d = d_rows[k, DOC]
            if d < min_doc:
                return n_touched
            lb = d_rows[k, LEN]
            j = d_rows[k, POS]
            stats[ENTRIES] += 1
            if lo <= lb <= hi:
                t = need(la, lb, num, den)
                if j <= lb - t and la - i >= t:
                    n_touched = _touch(d, _start(t, delta), ht, bits, touched, n_touched)
                elif j <= lb - t + delta:
                    _count(d, ht, bits)
        c = d_rows[c * CHUNK, NEXT]
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
    """Count bound, bitmap bound, bag bound, then the exact F, per touched text; True = too
    similar.

    The texts past the count bound are read in passes of independent loads (their offsets and
    bitmaps, then the first two cache lines of their elements, then the rest), so that their
    cache misses overlap instead of each text waiting for its own: at BELLE scale they are the
    probe's slowest memory accesses. The bitmap bound needs no more than the first pass reads."""
    num, den, _, thr = rule
    _, doc_ptr, doc_elems, elem_tok, doc_bm = pool
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
    qbm = bitmap(qe)
    end = np.empty(m, np.int64)
    alive = 0
    for c in range(m):
        d = first[c]
        a, b = doc_ptr[d], doc_ptr[d + 1]
        if popcount(qbm ^ doc_bm[d]) <= la + (b - a) - 2 * need(la, b - a, num, den):
            first[alive], end[alive] = a, b
            alive += 1
    stats[BITMAP] += alive
    m = alive
    if m == 0:
        return False
    for e in qe:
        mark[e] = tag
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
def _touch_bound(qe, lo, hi0, min_doc, rule, levels, d_cnt):
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
            for level in levels:
                bound += _level_bound(e, lo, hi, level)
        if e < len(d_cnt):
            bound += d_cnt[e]
    return bound


@nb.njit(cache=True)
def probe(q_elems, qt, rank, min_doc, rule, pool, levels, dl, tag, ht, touched, mark, stats):
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
    bits = table_bits(_touch_bound(qe, lo, hi0, min_doc, rule, levels, dl[2]), len(ht))
    n_touched = 0
    for i in range(indexed_len(la, num, den, delta)):
        # position i lies in the query's pair prefix only for partners with t(la, lb) <= la-i+δ
        hi = min(hi0, 2 * den * (la - i + delta) // num - la)
        if hi < lo:
            break
        e = qe[i]
        if min_doc == 0:
            for level in levels:
                n_touched = _scan_level(e, i, la, lo, hi, rule, level, ht, bits, touched, n_touched,
                                        stats)
        n_touched = _scan_delta(e, i, la, lo, hi, rule, min_doc, dl, ht, bits, touched, n_touched,
                                stats)
    found = _verify(qe, qt, rule, pool, tag, ht, touched, n_touched, mark, stats)
    for k in range(n_touched):
        ht[touched[k], KEY] = 0
    return found


@nb.njit(cache=True, parallel=True)
def probe_batch(q_ptr, q_elems, q_toks, rank, rule, pool, levels, dl, tags, ht, touched, mark,
                stats):
    """`probe` for many queries against the same (frozen) pool, one scratch row per worker;
    worker w takes the chunks of QUERY_CHUNK queries numbered w, w + workers, ... (interleaved,
    so that a run of costly queries is shared; dynamic scheduling would make numba recompile
    this function in every process, ~6 s)."""
    n = len(q_ptr) - 1
    workers = len(tags)
    blocked = np.zeros(n, np.bool_)
    big, small, tiny = levels  # a parallel loop takes tuples of arrays, not tuples of those
    for w in nb.prange(workers):
        for c in range(w * QUERY_CHUNK, n, workers * QUERY_CHUNK):
            for q in range(c, min(n, c + QUERY_CHUNK)):
                tags[w] += 1
                a, b = q_ptr[q], q_ptr[q + 1]
                blocked[q] = probe(q_elems[a:b], q_toks[a:b], rank, 0, rule, pool, (big, small, tiny),
                                   dl, tags[w], ht[w], touched[w], mark[w], stats[w])
    return blocked


@nb.njit(cache=True)
def f_all(qt, pool, n_docs):
    """Exact ROUGE-L F of the query against every pool text (for most_similar)."""
    lens, doc_ptr, doc_elems, elem_tok, _ = pool
    out = np.zeros(n_docs, np.float64)
    for d in range(n_docs):
        if lens[d]:
            out[d] = rouge_f(lcs_length(qt, elem_tok[doc_elems[doc_ptr[d]:doc_ptr[d + 1]]]),
                             len(qt), lens[d])
    return out


@nb.njit(cache=True)
def settle_batch(q_ptr, q_elems, q_toks, blocked, keep, rank, rule, pool, levels, dl,
                 n_docs, tag, ht, touched, mark, stats):
    """In arrival order: a batch query not blocked by the pool is checked against the batch's
    earlier keepers (texts n_docs.. on, all in the delta lists) and kept or dropped; keepers
    join the pool. Fills `keep`; returns (n_docs, tag) after the batch."""
    num, den, delta, _ = rule
    first = n_docs
    for q in range(len(q_ptr) - 1):
        a, b = q_ptr[q], q_ptr[q + 1]
        if blocked[q]:
            continue
        tag += 1
        if probe(q_elems[a:b], q_toks[a:b], rank, first, rule, pool, levels, dl, tag, ht,
                 touched, mark, stats):
            continue
        keep[q] = True
        insert(q_elems[a:b], pool, rank, n_docs, num, den, delta, dl)
        n_docs += 1
    return n_docs, tag

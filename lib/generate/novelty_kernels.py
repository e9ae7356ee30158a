"""Compiled loops of the novelty filter (numba): build the prefix index, probe it, verify.

lib/generate/novelty.py explains the filter chain and why each bound is safe; this module
holds only the loops that must run at C speed (one probe reads thousands of posting entries
at BELLE scale). Every integer test here is the exact rational test of the docstring there,
with θ = num/den; nothing is approximated.

Tuples of arrays the kernels share (owned by novelty_index.PoolIndex):
  pool   = (lens, doc_ptr, doc_elems, elem_tok, doc_bm): length of text d, CSR of its element
           ids in text order, the token id of each element (for the exact LCS), and each text's
           bitmap, two words a row (see `bitmap`)
  level  = (g_ptr, g_head, ent): a sorted index level. Entries are grouped by (element, text
           length): element e owns groups g_ptr[e]..g_ptr[e+1]-1; group g's head is
           `first entry << LEN_BITS | length` (one more head closes the last group), and its
           entries, sorted by position, are `text << POS_BITS | position of e in the text`
           (`_first`, `_len`, `_doc` and `_pos` read them back).
           One load per group and one per entry: the probe reads thousands of short groups,
           and each separate array (lengths, starts, positions, texts) was another stream of
           cache misses (one array each: 16% slower at 1M).
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

# Scratch of one probe, per thread:
# - `cnt`: STATE_BITS per pool text (32 texts to a uint64 word): 0 while the text is untouched;
#   once touched, PASSED minus the shared elements the count bound still needs, stopping at PASSED
#   (`passed`; δ <= 2, so PASSED <= STATE_MASK). A touch or a count is a load, a few adds and a
#   store whatever the text's state: no branch to mispredict. At 2 bits per text the array stays
#   in the L2 cache (1 MiB a core here) at any pool the project meets: 256 KiB at a million texts.
#   (A hash table of the touched texts, sized from the entries a probe may read, cost a third of a
#   probe at 1M: every lookup a mispredicted branch and a probe sequence; a byte per text, 1 MiB at
#   1M, shared the L2 with the index being read.) A probe sets the states it changed back to 0
#   before it returns.
# - `touched`: the texts it touched, in order.
# - `mark`: a bitset of the query's elements (a bit per element id), for the bag bound; cleared
#   after each query.
STATE_BITS = 2
STATE_MASK = (1 << STATE_BITS) - 1
WORD_SHIFT = 5  # text d's state is in word d >> WORD_SHIFT: 2**5 = 64 // STATE_BITS states a word
assert STATE_BITS << WORD_SHIFT == 64
LINE = 16  # element ids (int32) per 64-byte cache line
QUERY_CHUNK = 16  # queries a probe_batch thread takes at a time
CHUNK = 8  # rows per delta chunk: a header and up to 7 entries
NEXT, FILL = 0, 1  # the columns of a chunk's header row
DOC, LEN, POS = 0, 1, 2  # the columns of a delta entry
# Counters a probe adds to: posting entries read, texts touched, texts past the count bound,
# past the bitmap bound, past the bag bound (= exact LCS computed).
ENTRIES, CANDIDATES, BOUNDED, BITMAP, LCS = 0, 1, 2, 3, 4
COUNTERS = 5
BITS = 63  # bits a bitmap word uses: bit 63 stays clear, so words are non-negative int64
BM_WORDS = 2  # words a bitmap: 126 bits (63 let 4 times as many texts reach the bag bound)
# Packed index entries (see `level` above). Text ids and lengths are below 2**24, checked where
# texts join the pool (novelty_index.PoolIndex.make_room); positions saturate (see `_groups`).
POS_BITS = 8
POS_MASK = (1 << POS_BITS) - 1
LEN_BITS = 24
LEN_MASK = (1 << LEN_BITS) - 1
MAX_DOCS = 1 << (32 - POS_BITS)  # text ids fit the 24 bits an entry has left


@nb.njit(cache=True, inline="always")
def _doc(v):
    """The text of a packed index entry."""
    return np.int64(v >> POS_BITS)


@nb.njit(cache=True, inline="always")
def _pos(v):
    """The (saturated) position of a packed index entry."""
    return np.int64(v & POS_MASK)


@nb.njit(cache=True, inline="always")
def _first(h):
    """The first entry of a group, from its head (or the end of the group before it)."""
    return h >> LEN_BITS


@nb.njit(cache=True, inline="always")
def _len(h):
    """The text length of a group, from its head."""
    return h & LEN_MASK


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
    """A text's bitmap, BM_WORDS words: bit h(e) set for each of its elements (h hashes an
    element id to 0..125, bit h % 63 of word h // 63). Shared elements set the same bit in
    both texts, so a bit set in only one of two bitmaps comes from an element only that text
    has, and different bits from different elements:
    popcount(bx ^ by) <= |x - y| + |y - x| = la + lb - 2·overlap (the bitmap bound)."""
    words = np.zeros(BM_WORDS, np.int64)
    for e in elems:
        h = ((np.int64(e) * 2654435761) & 0xFFFFFFFF) % (BITS * BM_WORDS)
        words[h // BITS] |= np.int64(1) << (h % BITS)
    return words


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
    """A level from sorted entries (key = length << 32 | position, and the text): one group per
    (element, length), heads and entries packed (see the module docstring)."""
    n_groups = 0
    for e in range(n_elems):
        for k in range(ptr[e], ptr[e + 1]):
            if k == ptr[e] or (key[k] >> 32) != (key[k - 1] >> 32):
                n_groups += 1
    g_ptr = np.zeros(n_elems + 1, np.int64)
    g_head = np.empty(n_groups + 1, np.int64)
    g = 0
    for e in range(n_elems):
        for k in range(ptr[e], ptr[e + 1]):
            if k == ptr[e] or (key[k] >> 32) != (key[k - 1] >> 32):
                g_head[g] = (k << LEN_BITS) | (key[k] >> 32)  # _first, _len
                g += 1
        g_ptr[e + 1] = g
    g_head[n_groups] = len(key) << LEN_BITS
    # positions saturate at POS_MASK: a stored position is <= the real one, so the scan reads an
    # entry at least as often as it should (touching or counting more is safe, see _scan_level)
    ent = np.empty(len(key), np.uint32)
    for k in range(len(key)):  # read back by _doc and _pos
        ent[k] = (np.uint32(doc[k]) << POS_BITS) | np.uint32(min(key[k] & 0xFFFFFFFF, POS_MASK))
    return g_ptr, g_head, ent


@nb.njit(cache=True)
def merge_levels(a, b, n_elems):
    """One sorted level holding the entries of levels a and b: per element, a merge of two runs
    already sorted by (length, position), so folding a level into a larger one costs a
    sequential pass instead of a sort."""
    n = len(a[2]) + len(b[2])
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
                key[k], doc[k] = _key(a, ga, ia), _doc(a[2][ia])
                ia += 1
                if ia < ea and ia == _first(a[1][ga + 1]):
                    ga += 1
            else:
                key[k], doc[k] = _key(b, gb, ib), _doc(b[2][ib])
                ib += 1
                if ib < eb and ib == _first(b[1][gb + 1]):
                    gb += 1
            k += 1
        ptr[e + 1] = k
    return _groups(ptr, key, doc, n_elems)


@nb.njit(cache=True, inline="always")
def _run(level, e):
    """(first entry, end, first group) of element e's entries in a level."""
    g_ptr, g_head = level[0], level[1]
    if e + 1 >= len(g_ptr) or g_ptr[e] == g_ptr[e + 1]:
        return 0, 0, 0
    return _first(g_head[g_ptr[e]]), _first(g_head[g_ptr[e + 1]]), g_ptr[e]


@nb.njit(cache=True, inline="always")
def _key(level, g, k):
    """The sort key (length << 32 | stored position) of entry k, in group g."""
    return (_len(level[1][g]) << 32) | _pos(level[2][k])


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
def passed(delta):
    """The state of a text past the count bound (see the scratch note above): a text can need at
    most δ further elements after its first (`_start`), so touched texts hold 1..PASSED."""
    return delta + 1


def state_words(n_docs: int) -> int:
    """Length of a state array (`cnt`) for texts 0..n_docs-1."""
    return (n_docs >> WORD_SHIFT) + 1


@nb.njit(cache=True, inline="always")
def _state(d, cnt):
    """(word index, word, shift, state) of text d in the state array. The indices on the scan's
    per-entry path (here, `_touch`'s list, `_scan_level`'s entries) are unsigned: numba guards
    every signed index it cannot prove non-negative with a wraparound (a compare and an add),
    which on this path cost a tenth of a probe."""
    k = np.uint64(d) >> np.uint64(WORD_SHIFT)
    w = cnt[k]
    sh = np.uint64((d & ((1 << WORD_SHIFT) - 1)) * STATE_BITS)
    return k, w, sh, np.int64((w >> sh) & np.uint64(STATE_MASK))


@nb.njit(cache=True, inline="always")
def _touch(d, start, top, cnt, touched, n_touched):
    """Count a shared element of text d. The caller has checked that this entry passes the
    positional bound (so on d's first shared element the pair is alive and starts at `start`,
    0 or below). Branch-free: a fresh text is listed (the slot is overwritten otherwise)."""
    k, w, sh, c = _state(d, cnt)
    fresh = np.int64(c == 0)
    new = (1 - fresh) * (c + (c < top)) + fresh * (top + start)
    cnt[k] = w ^ (np.uint64(c ^ new) << sh)
    touched[np.uint64(n_touched)] = d
    return n_touched + fresh


@nb.njit(cache=True, inline="always")
def _count(d, top, cnt):
    """Count a shared element of text d only if an earlier element touched it: an entry past
    the positional bound min(la-i, lb-j) >= t can only be a later shared element of a live pair
    (elements come in the same order in both texts, so d's first one was at a smaller i and j,
    and had it been past the bound, so would every later one)."""
    k, w, sh, c = _state(d, cnt)
    new = c + ((c != 0) & (c < top))
    cnt[k] = w ^ (np.uint64(c ^ new) << sh)


@nb.njit(cache=True, inline="always")
def _has(mark, e):
    """1 if element e is in the query (its bit is set in the query's bitset), else 0."""
    return (mark[e >> 6] >> np.uint64(e & 63)) & np.uint64(1)


@nb.njit(cache=True)
def _scan_level(e, i, la, lo, hi, rule, tneed, level, cnt, touched, n_touched, stats):
    """Entries of element e in a sorted level: lengths lo..hi, positions inside the pair prefix;
    first those that pass the positional bound (positions j <= lb-t), then the δ after them.
    tneed[lb] = t(la, lb), computed once per query (a division per length group was a tenth of
    a probe)."""
    delta = rule[2]
    top = passed(delta)
    g_ptr, g_head, ent = level
    if e + 1 >= len(g_ptr):
        return n_touched
    g, g_end = g_ptr[e], g_ptr[e + 1]
    while g < g_end and _len(g_head[g]) < lo:  # a few short lengths: a scan beats a search
        g += 1
    read = 0
    while g < g_end:
        lb = _len(g_head[g])
        if lb > hi:
            break
        t = tneed[lb]
        jmax = lb - t + delta  # last position of the pool text's pair prefix
        jnew = lb - t if la - i >= t else -1  # last position that passes the positional bound
        start = _start(t, delta)
        k, end = np.uint64(_first(g_head[g])), np.uint64(_first(g_head[g + 1]))
        first = k
        while k < end and _pos(ent[k]) <= jnew:
            n_touched = _touch(_doc(ent[k]), start, top, cnt, touched, n_touched)
            k += np.uint64(1)
        while k < end and _pos(ent[k]) <= jmax:
            _count(_doc(ent[k]), top, cnt)
            k += np.uint64(1)
        read += np.int64(k - first)
        g += 1
    stats[ENTRIES] += read
    return n_touched


@nb.njit(cache=True)
def _scan_delta(e, i, la, lo, hi, rule, tneed, min_doc, dl, cnt, touched, n_touched, stats):
    """The same test over element e's delta list (newest first, so stop below min_doc)."""
    delta = rule[2]
    top = passed(delta)
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
                t = tneed[lb]
                if j <= lb - t and la - i >= t:
                    n_touched = _touch(d, _start(t, delta), top, cnt, touched, n_touched)
                elif j <= lb - t + delta:
                    _count(d, top, cnt)
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
def _verify(qe, qt, rule, pool, tneed, cnt, touched, n_touched, mark, stats):
    """Count bound, bitmap bound, bag bound, then the exact F, per touched text; True = too
    similar. tneed[lb] = t(la, lb) for every length a touched text can have. Leaves every
    touched text's state at 0 (untouched) for the next probe.

    The texts past the count bound are read in passes of independent loads (their offsets and
    bitmaps, then the first two cache lines of their elements, then the rest), so that their
    cache misses overlap instead of each text waiting for its own: at BELLE scale they are the
    probe's slowest memory accesses. The passes up to the bitmap bound keep no branch on what
    they read (a list is compacted by adding the test's outcome to its end), so a mispredicted
    branch cannot cut the loads in flight short."""
    num, den, delta, thr = rule
    top = passed(delta)
    _, doc_ptr, doc_elems, elem_tok, doc_bm = pool
    la = len(qe)
    stats[CANDIDATES] += n_touched
    first = np.empty(n_touched, np.int64)
    m = 0
    for k in range(n_touched):  # the texts past the count bound; every state back to 0
        d = touched[k]
        word, w, sh, c = _state(d, cnt)
        cnt[word] = w & ~(np.uint64(STATE_MASK) << sh)
        first[m] = d  # the text id, until its offset replaces it below
        m += c == top
    stats[BOUNDED] += m
    qbm = bitmap(qe)
    bm = np.empty((m, BM_WORDS), np.int64)
    end = np.empty(m, np.int64)
    for c in range(m):  # independent loads: offsets and bitmaps of every text past the count bound
        d = first[c]
        for w in range(BM_WORDS):
            bm[c, w] = doc_bm[d, w]
        first[c], end[c] = doc_ptr[d], doc_ptr[d + 1]
    alive = 0
    for c in range(m):
        a, b = first[c], end[c]
        lb = b - a
        first[alive], end[alive] = a, b
        differ = 0
        for w in range(BM_WORDS):
            differ += popcount(qbm[w] ^ bm[c, w])
        alive += differ <= la + lb - 2 * tneed[lb]
    stats[BITMAP] += alive
    m = alive
    if m == 0:
        return False
    for e in qe:
        mark[e >> 6] |= np.uint64(1) << np.uint64(e & 63)
    bag = np.zeros(m, np.int64)
    for c in range(m):
        bag[c] = _has(mark, doc_elems[first[c]])
        if end[c] - first[c] > LINE:
            bag[c] += _has(mark, doc_elems[first[c] + LINE])
    found = False
    for c in range(m):
        a, b = first[c], end[c]
        lb = b - a
        shared = bag[c]
        for k in range(a + 1, b):
            shared += _has(mark, doc_elems[k]) * (k != a + LINE)
        if shared < tneed[lb]:
            continue
        stats[LCS] += 1
        if rouge_f(lcs_length(qt, elem_tok[doc_elems[a:b]]), la, lb) > thr:
            found = True
            break
    for e in qe:
        mark[e >> 6] = 0
    return found


@nb.njit(cache=True)
def probe(q_elems, qt, rank, min_doc, rule, pool, levels, dl, cnt, touched, mark, stats):
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
    tneed = np.empty(hi0 + 1, np.int64)
    for lb in range(lo, hi0 + 1):
        tneed[lb] = need(la, lb, num, den)
    n_touched = 0
    for i in range(indexed_len(la, num, den, delta)):
        # position i lies in the query's pair prefix only for partners with t(la, lb) <= la-i+δ
        hi = min(hi0, 2 * den * (la - i + delta) // num - la)
        if hi < lo:
            break
        e = qe[i]
        if min_doc == 0:
            for level in levels:
                n_touched = _scan_level(e, i, la, lo, hi, rule, tneed, level, cnt, touched,
                                        n_touched, stats)
        n_touched = _scan_delta(e, i, la, lo, hi, rule, tneed, min_doc, dl, cnt, touched, n_touched,
                                stats)
    return _verify(qe, qt, rule, pool, tneed, cnt, touched, n_touched, mark, stats)


@nb.njit(cache=True, parallel=True)
def probe_batch(q_ptr, q_elems, q_toks, rank, rule, pool, levels, dl, cnt, touched, mark, stats):
    """`probe` for many queries against the same (frozen) pool, one scratch row per worker;
    worker w takes the chunks of QUERY_CHUNK queries numbered w, w + workers, ... (interleaved,
    so that a run of costly queries is shared; dynamic scheduling would make numba recompile
    this function in every process, ~6 s)."""
    n = len(q_ptr) - 1
    workers = len(cnt)
    blocked = np.zeros(n, np.bool_)
    big, small, tiny = levels  # a parallel loop takes tuples of arrays, not tuples of those
    for w in nb.prange(workers):
        for c in range(w * QUERY_CHUNK, n, workers * QUERY_CHUNK):
            for q in range(c, min(n, c + QUERY_CHUNK)):
                a, b = q_ptr[q], q_ptr[q + 1]
                blocked[q] = probe(q_elems[a:b], q_toks[a:b], rank, 0, rule, pool, (big, small, tiny),
                                   dl, cnt[w], touched[w], mark[w], stats[w])
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
                 n_docs, cnt, touched, mark, stats):
    """In arrival order: a batch query not blocked by the pool is checked against the batch's
    earlier keepers (texts n_docs.. on, all in the delta lists) and kept or dropped; keepers
    join the pool. Fills `keep`; returns n_docs after the batch."""
    num, den, delta, _ = rule
    first = n_docs
    for q in range(len(q_ptr) - 1):
        a, b = q_ptr[q], q_ptr[q + 1]
        if blocked[q]:
            continue
        if probe(q_elems[a:b], q_toks[a:b], rank, first, rule, pool, levels, dl, cnt, touched,
                 mark, stats):
            continue
        keep[q] = True
        insert(q_elems[a:b], pool, rank, n_docs, num, den, delta, dl)
        n_docs += 1
    return n_docs

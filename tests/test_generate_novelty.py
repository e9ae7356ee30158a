"""The novelty filter makes exactly rouge_score's ROUGE-L decisions, and catches Chinese near-duplicates."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz import process
from rapidfuzz.distance import LCSseq
from rouge_score import rouge_scorer
from rouge_score.rouge_scorer import _score_lcs

from lib.core.errors import UserError
from lib.generate import novelty, novelty_index
from lib.generate.novelty import NoveltyFilter, rouge_f
from lib.core.text import guess_lang, rouge_tokens, tokens

REPO = Path(__file__).resolve().parent.parent

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def brute_force(pool: list[str], candidates: list[str], threshold: float = 0.7) -> list[bool]:
    """Alpaca's rule: rouge_score against the seeds and everything kept so far."""
    toks = [SCORER._tokenizer.tokenize(t) for t in pool]
    out = []
    for c in candidates:
        ct = SCORER._tokenizer.tokenize(c)
        keep = max((_score_lcs(ct, t).fmeasure for t in toks), default=0.0) <= threshold
        out.append(keep)
        if keep:
            toks.append(ct)
    return out


def light_edits(texts: list[str], n: int, seed: int) -> list[str]:
    """Sample n texts with 0-2 word edits each: many near-duplicates, some exact ones."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.choice(texts).split()
        for _ in range(rng.choice([0, 0, 1, 2])):
            if len(words) < 2:
                break
            j = rng.randrange(len(words))
            op = rng.random()
            if op < 0.33:
                del words[j]
            elif op < 0.66:
                words[j] = rng.choice(["new", "short", "the", "simple", "list", "a"])
            else:
                k = rng.randrange(len(words))
                words[j], words[k] = words[k], words[j]
        out.append(" ".join(words))
    return out


def test_tokenizer_matches_rouge_score_on_english():
    samples = ["Write a haiku about the sea!", "What's 2+2? It's 4.", "Ünïcode café — naïve résumé",
               "snake_case and camelCase, K\u212a (Kelvin) and ﬁ ligatures", "", "   ", "1,000.50 dollars"]
    for s in samples:
        assert rouge_tokens(s) == SCORER._tokenizer.tokenize(s), s
        assert tokens(s) == SCORER._tokenizer.tokenize(s), s  # no CJK: identical


def test_cjk_is_tokenized_per_character():
    assert tokens("给出同义词 for AI") == ["给", "出", "同", "义", "词", "for", "ai"]
    assert SCORER._tokenizer.tokenize("给出同义词") == []  # why Alpaca never dedups Chinese


def test_exact_decisions_on_real_instructions(shared_data):
    seeds = [json.loads(l)["instruction"] for l in open(shared_data / "selfinstruct_seed_tasks.jsonl")]
    base = [json.loads(l)["instruction"] for l in open(shared_data / "bench_instructions.jsonl")][:3000]
    # short instructions from the seeds, edited, too: near the 0.7 boundary many F values are exact ties
    cands = light_edits(base, 150, seed=1) + light_edits(seeds, 150, seed=2)
    random.Random(3).shuffle(cands)
    f = NoveltyFilter()
    f.extend(seeds)
    got = f.add_many(cands)
    want = brute_force(seeds, cands)
    assert got == want
    assert 0 < sum(got) < len(got)  # the sample exercises both outcomes


def test_exact_at_the_boundary():
    # LCS/length combinations where F is exactly 0.7 in rationals (7 of 10 tokens vs itself
    # shortened) : rouge_score's float formula decides, and so must we.
    pool = ["a b c d e f g h i j"]
    cands = ["a b c d e f g x y z", "a b c d e f g", "a b c d e f g h", "q r s t u v w",
             "a b c d e f g h i j k l m n", "b c d e f g h i j"]
    f = NoveltyFilter()
    f.extend(pool)
    assert f.add_many(cands) == brute_force(pool, cands)
    assert rouge_f(7, 10, 10) == _score_lcs(list("abcdefgxyz"), list("abcdefghij")).fmeasure


@pytest.mark.parametrize("seed", [0, 1])
def test_random_token_soup_matches_brute_force(seed):
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(12)]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 9))) for _ in range(250)]
    f = NoveltyFilter()
    f.extend(texts[:20])
    assert f.add_many(texts[20:]) == brute_force(texts[:20], texts[20:])


def test_chinese_near_duplicates_rejected_distinct_kept(shared_data):
    seeds = [json.loads(l)["instruction"] for l in open(shared_data / "belle_zh_seed_tasks.jsonl")]
    f = NoveltyFilter()
    f.extend(seeds[:100])
    target = "给出下面词语的同义词"
    assert target in seeds[:100]
    one_char = "给出下面词汇的同义词"  # one character changed
    reordered = "下面词语的同义词请给出"  # a phrase moved
    assert not f.add(one_char)
    assert not f.add(reordered)
    distinct = ["请用三句话介绍一下长城的历史。", "把这段英文翻译成中文，并保持原来的语气。", "为一家新开的咖啡店想五个店名。"]
    assert f.add_many(distinct) == [True, True, True]
    # the same pool under rouge_score's own tokenizer would keep the near-duplicates
    assert brute_force(seeds[:100], [one_char]) == [True]


def test_most_similar_is_exact():
    f = NoveltyFilter()
    pool = ["write a poem about the sea", "write a story about a dog", "translate this sentence to french"]
    f.extend(pool)
    best = f.most_similar("write a poem about a dog", k=3)
    assert [t for _, t in best] == ["write a story about a dog", "write a poem about the sea",
                                    "translate this sentence to french"]
    q = SCORER._tokenizer.tokenize("write a poem about a dog")
    for score, text in best:
        assert score == _score_lcs(q, SCORER._tokenizer.tokenize(text)).fmeasure


# -- natural text at BELLE-like density, ties, Chinese, and generated overlap (issue 26) -----------

def greedy_reference(pool: list[str], candidates: list[str], threshold: float = 0.7):
    """The greedy rule over all pairs, with the novelty rule's tokens (CJK per character): exact
    LCS from rapidfuzz on token ids, F with rouge_score's float formula (2pr/(p+r), p against
    the pool text); `check_lcs` confirms those F values with rouge_score's `_score_lcs`."""
    texts = [tokens(t) for t in pool + candidates]
    ids: dict[str, int] = {}
    seqs = ["".join(chr(0x4E00 + ids.setdefault(w, len(ids))) for w in t) for t in texts]
    lcs = process.cdist(seqs, seqs, scorer=LCSseq.similarity, dtype=np.int32, workers=1)
    lens = np.array([len(t) for t in texts], dtype=np.float64)
    kept = np.zeros(len(texts), dtype=bool)
    kept[: len(pool)] = True
    out = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for c in range(len(pool), len(texts)):
            p, r = lcs[c] / lens, lcs[c] / lens[c]
            f = np.where((p + r > 0) & (lens > 0) & (lens[c] > 0), 2 * p * r / (p + r), 0.0)
            keep = not (f[kept] > threshold).any()
            out.append(keep)
            kept[c] = keep
    return out, lcs, texts


@pytest.fixture(scope="module")
def natural_case(shared_data):
    from bench.novelty_data import natural_candidates, seed_pool

    seeds = seed_pool()
    cands = natural_candidates(2000, seed=11)
    ties, tie_decisions = exact_ties()
    cands = cands[:1000] + ties + cands[1000:]
    want, lcs, texts = greedy_reference(seeds, cands)
    check_lcs(lcs, texts, random.Random(5))
    assert want[1000:1000 + len(ties)] == tie_decisions  # the reference itself keeps F == 0.7
    return seeds, cands, want


def check_lcs(lcs, texts, rng: random.Random, sample: int = 1500) -> None:
    """rapidfuzz's LCS equals rouge_score's on every pair near the threshold and on a sample."""
    n = len(texts)
    near = [(a, b) for a in range(n) for b in range(a) if texts[a] and texts[b]
            and 2 * lcs[a, b] / (len(texts[a]) + len(texts[b])) > 0.6]
    pairs = near + [(rng.randrange(n), rng.randrange(n)) for _ in range(sample)]
    for a, b in pairs:
        if texts[a] and texts[b]:
            got = _score_lcs(texts[a], texts[b]).fmeasure
            assert got == rouge_f(int(lcs[a, b]), len(texts[a]), len(texts[b])), (a, b)
    assert len(near) > 100  # the boundary region is really exercised


def exact_ties() -> tuple[list[str], list[bool]]:
    """Texts whose F against an earlier one is exactly 0.7 in rationals -- equal lengths give
    the float 0.7 (kept), unequal ones 0.7000000000000001 (dropped) -- plus near misses, in
    English and Chinese; and the decisions rouge_score's rule makes on them."""
    base = "describe the history of the old lighthouse on the coast"  # 10 tokens
    short = "list three uses of copper in homes"  # 7 tokens
    zh = "请用三句话介绍一下长城"  # 11 characters, one token each
    texts = [
        base,
        "describe the history of the old lighthouse tie1 tie2 tie3",  # LCS 7 of 10, 10: 0.7, kept
        "describe the history of the old lighthouse",                  # 7 vs 10: 14/17, dropped
        zh,
        zh[:7] + "宫",                                                  # 7 vs 8 of 11: 14/19, dropped
        zh[:7] + "和历史建筑",                                           # 7 of 12 vs 11: 14/23, kept
        short,
        short + " u1 u2 u3 u4 u5 u6",                                   # 7 vs 13: 0.7+, dropped
    ]
    return texts, [True, True, False, True, False, True, True, False]


@pytest.mark.parametrize("batch_size", [1, 97, 2048])
def test_exact_on_natural_text_with_ties_and_chinese(natural_case, batch_size):
    seeds, cands, want = natural_case
    f = NoveltyFilter()
    f.extend(seeds)
    got = f.add_many(cands, batch_size=batch_size)
    assert got == want
    assert 0.8 < sum(got) / len(got) < 1  # mostly novel, some near-duplicates dropped
    assert any(k and guess_lang(c) == "zh" for c, k in zip(cands, got))  # Chinese kept, too


def test_exact_while_levels_merge(natural_case, monkeypatch):
    """With a tiny merge size the delta is folded into the tiny level every few texts and the
    levels cascade into the big one many times between re-ranks: decisions stay exact."""
    from lib.generate import novelty_index

    monkeypatch.setattr(novelty_index, "MIN_MERGE", 64)
    seeds, cands, want = natural_case
    f = NoveltyFilter()
    into = []  # which level each merge folds into: 0 = big, 1 = small, 2 = tiny
    merge = novelty_index.K.merge_levels

    def counted(a, b, n_elems):
        into.append(next(k for k, level in enumerate(f._index.levels) if level is a))
        return merge(a, b, n_elems)

    monkeypatch.setattr(novelty_index.K, "merge_levels", counted)
    f.extend(seeds)
    assert f.add_many(cands, batch_size=97) == want
    assert {0, 1, 2} <= set(into)  # the cascade reached every level


def test_single_adds_match_batches_on_natural_text(shared_data):
    from bench.novelty_data import natural_candidates, seed_pool

    cands = natural_candidates(3000, seed=12)
    one, many = NoveltyFilter(), NoveltyFilter()
    one.extend(seed_pool())
    many.extend(seed_pool())
    assert [one.add(t) for t in cands] == many.add_many(cands, batch_size=256)
    assert one.texts == many.texts
    probe = cands[5]
    assert one.is_novel(probe) == many.is_novel(probe) == (probe not in one.texts and one.is_novel(probe))


WORDS = st.sampled_from(["a", "b", "c", "d", "e", "f", "写", "诗"])


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.lists(WORDS, min_size=0, max_size=10), min_size=2, max_size=40),
       n_seeds=st.integers(0, 5), threshold=st.sampled_from([0.5, 0.7, 0.75]),
       batch_size=st.sampled_from([1, 3, 2048]))
def test_decisions_equal_brute_force_on_generated_overlap(texts, n_seeds, threshold, batch_size):
    texts = [" ".join(t) for t in texts]
    seeds, cands = texts[:n_seeds], texts[n_seeds:]
    f = NoveltyFilter(threshold=threshold)
    f.extend(seeds)
    assert f.add_many(cands, batch_size=batch_size) == brute_force_tokens(seeds, cands, threshold)


def brute_force_tokens(pool: list[str], candidates: list[str], threshold: float) -> list[bool]:
    """Alpaca's loop with rouge_score's `_score_lcs`, on the novelty rule's tokens."""
    toks = [tokens(t) for t in pool]
    out = []
    for c in candidates:
        ct = tokens(c)
        keep = max((_score_lcs(ct, t).fmeasure for t in toks), default=0.0) <= threshold
        out.append(keep)
        if keep:
            toks.append(ct)
    return out


def test_kernels_as_python_decide_like_compiled(shared_data, tmp_path):
    """The numba kernels run as plain Python (NUMBA_DISABLE_JIT=1) and decide as compiled.

    Why: the compiled kernels are machine code that line coverage cannot see, and Python's
    unbounded ints could hide an overflow that int64 would show (or the reverse). Running the
    same exactness cases through the uncompiled loops checks both: every kernel line runs where
    coverage sees it, and the decisions must equal the compiled filter's and the brute force's.
    """
    seeds = [json.loads(l)["instruction"] for l in open(shared_data / "selfinstruct_seed_tasks.jsonl")]
    zh = [json.loads(l)["instruction"] for l in open(shared_data / "belle_zh_seed_tasks.jsonl")][:40]
    cands = light_edits(seeds, 60, seed=5) + light_edits(zh, 20, seed=6) + exact_ties()[0]
    pool = seeds[:60]
    (tmp_path / "case.json").write_text(json.dumps({"pool": pool, "cands": cands}))
    script = ("import json, sys; from lib.generate.novelty import NoveltyFilter\n"
              "from lib.generate import novelty_index; novelty_index.MIN_MERGE = 64  # merges run too\n"
              "case = json.load(open(sys.argv[1]))\n"
              "f = NoveltyFilter(); f.extend(case['pool'])\n"
              "got = f.add_many(case['cands'][:50]) + [f.add(c) for c in case['cands'][50:]]\n"
              "print(json.dumps(got))\n")
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "case.json")], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    as_python = json.loads(out.stdout.strip().splitlines()[-1])
    compiled = NoveltyFilter()
    compiled.extend(pool)
    assert as_python == compiled.add_many(cands) == brute_force_tokens(pool, cands, 0.7)
    assert 0 < sum(as_python) < len(as_python)


def test_exact_on_long_texts_whose_prefix_positions_saturate():
    """Entries past position 255 are stored as 255 (novelty_kernels._groups): a saturated
    position may make the scan read more, never change a decision. Each long pool text has 300
    words found nowhere else, which come first in its rare-first order, and 400 common words;
    a candidate made of its common words (330-400 of them, in order: F near 0.7) shares with it
    only elements at positions 300 and later, so finding it needs the saturated entries.
    Reference: `greedy_reference` (exact LCS, rouge's F formula)."""
    rng = random.Random(3)
    common = [f"c{i}" for i in range(600)]
    long_texts, common_parts = [], []
    for k in range(8):
        part = rng.sample(common, 400)
        words = part + [f"u{k}x{i}" for i in range(300)]
        rng.shuffle(words)
        long_texts.append(words)
        common_parts.append([w for w in words if w.startswith("c")])
    # 70 texts: past the first re-rank (64), so they sit in a packed level, not the delta lists
    pool = long_texts + [rng.sample(common, 40) for _ in range(62)]
    cands = []
    for _ in range(40):
        words = list(rng.choice(common_parts))
        for j in sorted(rng.sample(range(400), 400 - rng.randint(330, 400)), reverse=True):
            del words[j]
        cands.append(words)

    pool, cands = [" ".join(t) for t in pool], [" ".join(c) for c in cands]
    want, _, _ = greedy_reference(pool, cands)
    f = NoveltyFilter()
    f.extend(pool)
    assert len(f._index.levels[0][2]) > 0 and f._index.n_delta == 0
    assert f.add_many(cands) == want
    assert 0 < sum(want) < len(want)


def test_a_pool_past_the_index_capacity_is_one_clear_error_and_keeps_the_pool(monkeypatch):
    """Index entries hold a text id in 24 bits (novelty_kernels.MAX_DOCS); a batch that could take
    the pool past it is refused before anything is written, and the pool still works."""
    monkeypatch.setattr(novelty_index.K, "MAX_DOCS", 50)
    f = NoveltyFilter()
    f.extend(f"pool text number {i} about topic {i * 7}" for i in range(30))
    with pytest.raises(UserError, match="more than the 50 its index can number"):
        f.add_many(f"a fresh candidate {i} on subject {i * 11} today" for i in range(40))
    assert len(f) == 30 and f._index.n_docs == 30
    assert f.add("one more entirely new instruction") and len(f) == 31


def test_a_text_longer_than_the_index_holds_is_one_clear_error(monkeypatch):
    """Group heads hold a text length in 24 bits (novelty_kernels.LEN_MASK): checked as a text is
    encoded, before it touches the pool."""
    monkeypatch.setattr(novelty, "LEN_MASK", 5)
    f = NoveltyFilter()
    with pytest.raises(UserError, match="a text of 6 tokens is longer than the 5 .* truncate it"):
        f.add("one two three four five six")
    assert len(f) == 0 and f.add("one two three")
